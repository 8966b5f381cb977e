//! The host-to-device copy rate: how fast bytes in host memory reach a device buffer, the
//! ceiling of every bulk hashing round on a discrete card (PCIe), measured two ways.

use std::sync::Arc;
use std::time::Duration;

use super::GpuContext;
use crate::hash::HashError;

/// How bytes get from host memory into a device buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMethod {
    /// `queue.write_buffer`: wgpu copies into its own staging memory, then records the copy.
    WriteBuffer,
    /// Our own `MAP_WRITE | COPY_SRC` buffer: map, fill, unmap, `copy_buffer_to_buffer`.
    Staging,
}

impl CopyMethod {
    pub const ALL: [CopyMethod; 2] = [CopyMethod::WriteBuffer, CopyMethod::Staging];
}

impl std::fmt::Display for CopyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyMethod::WriteBuffer => "queue.write_buffer",
            CopyMethod::Staging => "mapped staging buffer",
        })
    }
}

/// The buffers of the copy-rate measurement, made once and reused by every upload, as the
/// hashing rounds reuse theirs.
pub struct HostUpload {
    ctx: Arc<GpuContext>,
    data: Vec<u8>,
    target: wgpu::Buffer,
    staging: wgpu::Buffer,
}

impl HostUpload {
    /// Bytes per upload unless the adapter's largest buffer is smaller.
    pub const DEFAULT_BYTES: u64 = 256 << 20;

    /// Makes a device buffer and a staging buffer of `bytes` (capped by the adapter's
    /// `max_buffer_size`) and host data to fill them with.
    ///
    /// # Errors
    /// A buffer the device cannot make.
    pub fn new(ctx: Arc<GpuContext>, bytes: u64) -> Result<Self, HashError> {
        let size = bytes.min(ctx.limits.max_buffer_size) / wgpu::COPY_BUFFER_ALIGNMENT
            * wgpu::COPY_BUFFER_ALIGNMENT;
        let len = usize::try_from(size).map_err(|_| ctx.error("upload size exceeds memory"))?;
        if len == 0 {
            return Err(ctx.error("upload size rounds down to zero bytes"));
        }
        let (target, staging) = ctx.scoped("making the upload buffers", || {
            let target = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload target"),
                size,
                // COPY_SRC only so that tests can read it back.
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("upload staging"),
                size,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            Ok((target, staging))
        })?;
        // Written, not zeroed: untouched zero pages could be read faster than real data.
        let data = vec![0xa5; len];
        Ok(Self {
            ctx,
            data,
            target,
            staging,
        })
    }

    /// Bytes one upload moves.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.target.size()
    }

    /// Uploads the host data once with `method` and waits until the device has it.
    ///
    /// # Errors
    /// A device failure or timeout.
    pub fn upload(&self, method: CopyMethod) -> Result<u64, HashError> {
        let ctx = &*self.ctx;
        ctx.scoped("uploading to the device", || {
            match method {
                CopyMethod::WriteBuffer => {
                    ctx.queue.write_buffer(&self.target, 0, &self.data);
                    // write_buffer is staged until the next submit.
                    ctx.queue.submit([]);
                }
                CopyMethod::Staging => {
                    self.fill_staging()?;
                    let mut encoder = ctx
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                    encoder.copy_buffer_to_buffer(&self.staging, 0, &self.target, 0, self.bytes());
                    ctx.queue.submit([encoder.finish()]);
                }
            }
            ctx.wait()
        })?;
        Ok(self.bytes())
    }

    /// Maps the staging buffer for writing (it is idle: every upload waits for the last) and
    /// copies the host data into it.
    fn fill_staging(&self) -> Result<(), HashError> {
        let ctx = &*self.ctx;
        let (sender, receiver) = std::sync::mpsc::channel();
        self.staging.map_async(wgpu::MapMode::Write, .., move |r| {
            let _ = sender.send(r);
        });
        ctx.wait()?;
        receiver
            .recv_timeout(Duration::from_secs(1))
            .map_err(|_| ctx.error("staging buffer map never completed"))?
            .map_err(|e| ctx.error(format!("mapping the staging buffer: {e}")))?;
        self.staging
            .get_mapped_range_mut(..)
            .map_err(|e| ctx.error(format!("writing the staging buffer: {e}")))?
            .copy_from_slice(&self.data);
        self.staging.unmap();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_methods_deliver_the_bytes() {
        std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
        let adapters = crate::hash::gpu::adapters();
        let adapter = adapters.first().expect("no GPU adapter (CI uses lavapipe)");
        let ctx = GpuContext::open(0, adapter).expect("the adapter opens");
        let upload = HostUpload::new(Arc::clone(&ctx), (1 << 20) + 6).expect("buffers");
        assert_eq!(upload.bytes(), (1 << 20) + 4, "rounded down to 4 bytes");
        for method in CopyMethod::ALL {
            ctx.queue.write_buffer(
                &upload.target,
                0,
                &vec![0; usize::try_from(upload.bytes()).unwrap()],
            );
            assert_eq!(upload.upload(method).unwrap(), upload.bytes());
            let back = ctx.read_back(&upload.target, upload.bytes()).unwrap();
            assert!(back.iter().all(|&b| b == 0xa5), "{method}");
        }
    }
}
