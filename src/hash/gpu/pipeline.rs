//! One compute pipeline per kernel, and the plain steps of dispatching it.

use super::context::GpuContext;
use crate::hash::HashError;

/// Threads per workgroup in every kernel (`@workgroup_size(64)`).
pub const WORKGROUP_SIZE: u32 = 64;

/// A compiled kernel.
pub struct Kernel {
    name: &'static str,
    pipeline: wgpu::ComputePipeline,
}

impl Kernel {
    /// Compiles a whole WGSL module ([`super::KernelId::source`]).
    ///
    /// # Errors
    /// A shader that does not validate on this device.
    pub fn new(ctx: &GpuContext, name: &'static str, source: &str) -> Result<Self, HashError> {
        ctx.scoped(&format!("compiling kernel {name}"), || {
            let module = ctx
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            Ok(Self::from_module(ctx, name, &module))
        })
    }

    /// Compiles a whole WGSL module without wgpu's runtime checks (index clamping, loop
    /// bounding): a kernel whose every index is provably in range runs faster without them.
    ///
    /// # Safety
    /// Every array index in `source` must be in range for every input the host can pass, and
    /// every loop must terminate; otherwise the kernel may read or write out of bounds.
    ///
    /// # Errors
    /// A shader that does not validate on this device.
    pub unsafe fn new_trusted(
        ctx: &GpuContext,
        name: &'static str,
        source: &str,
    ) -> Result<Self, HashError> {
        ctx.scoped(&format!("compiling kernel {name}"), || {
            let descriptor = wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            };
            // SAFETY: the caller promises what `create_shader_module_trusted` requires.
            let module = unsafe {
                ctx.device.create_shader_module_trusted(
                    descriptor,
                    wgpu::ShaderRuntimeChecks::unchecked(),
                )
            };
            Ok(Self::from_module(ctx, name, &module))
        })
    }

    fn from_module(ctx: &GpuContext, name: &'static str, module: &wgpu::ShaderModule) -> Self {
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            });
        Self { name, pipeline }
    }

    /// Binds `buffers` to bindings 0, 1, ... of group 0 and runs `invocations` threads; the
    /// kernels bound-check their own index, so the grid may be rounded up.
    ///
    /// # Errors
    /// A validation error, or a grid larger than the device allows.
    pub fn dispatch(
        &self,
        ctx: &GpuContext,
        buffers: &[&wgpu::Buffer],
        invocations: u32,
    ) -> Result<(), HashError> {
        let (x, y) = self.grid(ctx, invocations)?;
        ctx.scoped(&format!("dispatching kernel {}", self.name), || {
            let bind_group = self.bind_group(ctx, buffers);
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x, y, 1);
            }
            ctx.queue.submit([encoder.finish()]);
            Ok(())
        })
    }
}

impl Kernel {
    /// A bind group of `buffers` at bindings 0, 1, ... of group 0, made once by callers that
    /// dispatch the same buffers again and again.
    #[must_use]
    pub fn bind_group(&self, ctx: &GpuContext, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .zip(0u32..)
            .map(|(buffer, binding)| wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Records a dispatch of `invocations` threads with a prebuilt bind group into `pass`.
    ///
    /// # Errors
    /// A grid larger than the device allows.
    pub fn record(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        group: &wgpu::BindGroup,
        invocations: u32,
    ) -> Result<(), HashError> {
        let (x, y) = self.grid(ctx, invocations)?;
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(x, y, 1);
        Ok(())
    }

    /// Workgroups in x and y for `invocations` threads.
    fn grid(&self, ctx: &GpuContext, invocations: u32) -> Result<(u32, u32), HashError> {
        let groups = invocations.div_ceil(WORKGROUP_SIZE).max(1);
        let max = ctx.limits.max_compute_workgroups_per_dimension.max(1);
        let (x, y) = (groups.min(max), groups.div_ceil(max));
        if y > max {
            return Err(ctx.error(format!(
                "{}: {invocations} invocations is too many",
                self.name
            )));
        }
        Ok((x, y))
    }
}

/// A buffer of `size` bytes (rounded up to 16, never 0) with the given usage.
#[must_use]
pub fn buffer(ctx: &GpuContext, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: size.max(16).next_multiple_of(16),
        usage,
        mapped_at_creation: false,
    })
}

/// Usage of a buffer the host fills and a kernel reads or writes.
pub const STORAGE_IN: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_DST);
/// Usage of a buffer a kernel writes and the host reads back.
pub const STORAGE_INOUT: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);
/// Usage of a kernel's parameter block.
pub const UNIFORM: wgpu::BufferUsages =
    wgpu::BufferUsages::UNIFORM.union(wgpu::BufferUsages::COPY_DST);
