//! Adapter discovery and device creation. We do our own adapter selection, since wgpu's
//! environment helper panics when `WGPU_ADAPTER_NAME` matches nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::hash::HashError;

/// The longest we wait for one submission before calling the device lost.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What `devices` shows about an adapter, and how `--backend gpu:N` finds it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A real GPU (discrete or integrated), which `--backend auto` may pick.
    pub is_real_gpu: bool,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_invocations_per_workgroup: u32,
}

fn type_rank(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(backend: wgpu::Backend) -> u8 {
    // Native compute APIs first; GL has no compute on many drivers and is the last resort.
    match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::BrowserWebGpu => 1,
        wgpu::Backend::Gl => 2,
        wgpu::Backend::Noop => 3,
    }
}

/// True for adapters `auto` may choose.
#[must_use]
pub fn is_real_gpu(device_type: wgpu::DeviceType) -> bool {
    matches!(
        device_type,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    )
}

/// Every adapter that can run compute shaders, best first: discrete, integrated, virtual,
/// CPU (lavapipe), with native APIs ahead of GL. Indices in `devices` follow this order.
#[must_use]
pub fn adapters() -> Vec<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        // GL compute is a poor fit and probing EGL only adds noise (and a second llvmpipe);
        // `WGPU_BACKEND=gl` still asks for it.
        descriptor.backends = wgpu::Backends::PRIMARY;
    }
    let backends = descriptor.backends;
    let instance = wgpu::Instance::new(descriptor);
    let mut adapters: Vec<wgpu::Adapter> =
        pollster::block_on(instance.enumerate_adapters(backends))
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities()
                    .flags
                    .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
            })
            .collect();
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (type_rank(info.device_type), backend_rank(info.backend))
    });
    adapters
}

/// The summary `devices` prints for the adapter at `index`.
#[must_use]
pub fn summarize(index: usize, adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    AdapterSummary {
        index,
        name: info.name,
        backend: info.backend.to_string(),
        device_type: format!("{:?}", info.device_type),
        driver: [info.driver, info.driver_info]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        is_real_gpu: is_real_gpu(info.device_type),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
    }
}

/// An open device with the limits we sized our batches by.
pub struct GpuContext {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
}

impl GpuContext {
    /// Opens the adapter with its real limits (not WebGPU's defaults: we want big buffers).
    ///
    /// # Errors
    /// When the device cannot be created.
    pub fn open(index: usize, adapter: &wgpu::Adapter) -> Result<Arc<Self>, HashError> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("peerhash"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| HashError::Gpu {
            adapter: info.name.clone(),
            message: format!("cannot open device: {e}"),
        })?;
        // Errors are caught by error scopes around each operation; anything that escapes is
        // logged instead of wgpu's default panic.
        device.on_uncaptured_error(Arc::new(|e| tracing::error!("uncaptured GPU error: {e}")));
        Ok(Arc::new(Self {
            index,
            info,
            limits,
            device,
            queue,
        }))
    }

    /// A [`HashError::Gpu`] naming this adapter.
    pub fn error(&self, message: impl std::fmt::Display) -> HashError {
        HashError::Gpu {
            adapter: self.info.name.clone(),
            message: message.to_string(),
        }
    }

    /// Whether this adapter is a CPU rasterizer such as lavapipe (with its loop limit).
    #[must_use]
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Runs `work` inside validation and out-of-memory error scopes, turning what they catch
    /// into an error instead of a panic.
    ///
    /// # Errors
    /// What the scopes caught, or what `work` returned.
    pub fn scoped<T>(
        &self,
        what: &str,
        work: impl FnOnce() -> Result<T, HashError>,
    ) -> Result<T, HashError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = work();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        if let Some(e) = validation.or(oom) {
            return Err(self.error(format!("{what}: {e}")));
        }
        result
    }

    /// Waits for all submitted work, or fails after [`DISPATCH_TIMEOUT`].
    ///
    /// # Errors
    /// A timeout or a lost device.
    pub fn wait(&self) -> Result<(), HashError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(DISPATCH_TIMEOUT),
            })
            .map(drop)
            .map_err(|e| self.error(format!("waiting for the device: {e}")))
    }

    /// Waits for one submission (and the map callbacks it fires), or fails after
    /// [`DISPATCH_TIMEOUT`]; later submissions keep running.
    ///
    /// # Errors
    /// A timeout or a lost device.
    pub fn wait_for(&self, submission: wgpu::SubmissionIndex) -> Result<(), HashError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(DISPATCH_TIMEOUT),
            })
            .map(drop)
            .map_err(|e| self.error(format!("waiting for the device: {e}")))
    }

    /// Copies `size` bytes of `source` into a new mappable buffer and returns them (for one-off
    /// reads; repeated work keeps its own read-back buffer and calls [`GpuContext::read_mapped`]).
    ///
    /// # Errors
    /// A device failure.
    pub fn read_back(&self, source: &wgpu::Buffer, size: u64) -> Result<Vec<u8>, HashError> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.copy_buffer_to_buffer(source, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        self.read_mapped(&staging)
    }

    /// Maps a read-back buffer the submitted work has filled and returns its bytes.
    ///
    /// # Errors
    /// A device failure.
    pub fn read_mapped(&self, staging: &wgpu::Buffer) -> Result<Vec<u8>, HashError> {
        let (sender, receiver) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = sender.send(r);
        });
        let bytes = self.wait().and_then(|()| {
            receiver
                .recv_timeout(Duration::from_secs(1))
                .map_err(|_| self.error("buffer map never completed"))?
                .map_err(|e| self.error(format!("mapping a result buffer: {e}")))?;
            Ok(staging
                .get_mapped_range(..)
                .map_err(|e| self.error(format!("reading a result buffer: {e}")))?
                .to_vec())
        });
        // Also on failure: a map still pending would make the next use of the buffer fail.
        staging.unmap();
        bytes
    }
}
