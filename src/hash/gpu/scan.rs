//! Host side of the `sha256d_scan` kernel: a nonce range in dispatches of `batch` nonces.

use super::context::GpuContext;
use super::pipeline::{buffer, Kernel, STORAGE_IN, STORAGE_INOUT};
use super::scan_kernel::ScanKernel;
use crate::hash::{cpu, HashError, ScanJob};

/// Winners one dispatch can report; a dispatch with more (an absurdly easy target) is
/// searched again on the CPU so none is lost.
pub const FOUND_CAPACITY: u32 = 1024;

/// Words of `ScanParams` after the job constants: the target (8), then `sizes` (4).
const TARGET_AND_SIZES: usize = 12;

/// How a device splits a nonce range.
#[derive(Clone, Copy, Debug)]
pub struct ScanShape {
    /// Nonces per dispatch: bounds the time between new-work checks and under the watchdog.
    pub batch: u32,
    /// Nonces per invocation: lavapipe allows ~32K loop iterations; more per thread
    /// amortizes the midstate loads on real GPUs.
    pub per_invocation: u32,
}

impl ScanShape {
    #[must_use]
    pub fn for_device(ctx: &GpuContext) -> Self {
        if ctx.is_software() {
            Self {
                batch: 1 << 20,
                per_invocation: 64,
            }
        } else {
            Self {
                batch: 1 << 26,
                per_invocation: 256,
            }
        }
    }
}

/// The scan's buffers and bind group, made once per device and reused by every scan call.
pub struct ScanBuffers {
    params: wgpu::Buffer,
    found: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl ScanBuffers {
    #[must_use]
    pub fn new(ctx: &GpuContext, kernel: &Kernel) -> Self {
        let params_words = ScanKernel::get().job_word_count() + TARGET_AND_SIZES;
        let params = buffer(ctx, "scan params", (params_words * 4) as u64, STORAGE_IN);
        let found = buffer(ctx, "found nonces", FOUND_BYTES, STORAGE_INOUT);
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("found read-back"),
            size: FOUND_BYTES,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = kernel.bind_group(ctx, &[&params, &found]);
        Self {
            params,
            found,
            staging,
            bind_group,
        }
    }
}

/// The found counter and its slots.
const FOUND_BYTES: u64 = (FOUND_CAPACITY as u64 + 1) * 4;

/// Nonces reported by the device (not yet re-checked) and those it could not report.
pub fn scan(
    ctx: &GpuContext,
    kernel: &Kernel,
    buffers: &ScanBuffers,
    job: &ScanJob,
    shape: ScanShape,
) -> Result<Vec<u32>, HashError> {
    // The job constants and the target, once per job; only `sizes` changes per dispatch.
    let mut words = ScanKernel::get().job_words(&job.midstate, &job.tail);
    words.extend_from_slice(&job.target.words());
    let sizes_offset = (words.len() * 4) as u64;
    words.extend_from_slice(&[0; 4]);
    ctx.queue
        .write_buffer(&buffers.params, 0, bytemuck::cast_slice(&words));
    let end = u64::from(job.start) + job.count;
    let mut reported = Vec::new();
    let mut first = u64::from(job.start);
    while first < end {
        let count = u32::try_from((end - first).min(u64::from(shape.batch))).expect("batch is u32");
        let start = u32::try_from(first).expect("ScanJob keeps nonces below 2^32");
        let sizes = [count, shape.per_invocation, FOUND_CAPACITY, start];
        ctx.queue
            .write_buffer(&buffers.params, sizes_offset, bytemuck::cast_slice(&sizes));
        ctx.queue.write_buffer(&buffers.found, 0, &[0u8; 4]);
        let invocations = count.div_ceil(shape.per_invocation);
        ctx.scoped("dispatching kernel sha256d_scan", || {
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                kernel.record(ctx, &mut pass, &buffers.bind_group, invocations)?;
            }
            encoder.copy_buffer_to_buffer(&buffers.found, 0, &buffers.staging, 0, FOUND_BYTES);
            ctx.queue.submit([encoder.finish()]);
            Ok(())
        })?;
        let bytes = ctx.read_mapped(&buffers.staging)?;
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let hits = words[0];
        if hits > FOUND_CAPACITY {
            // More winners than slots: the CPU oracle finds them all for this batch.
            reported.extend(cpu::sha256d::scan_range(
                &job.midstate,
                &job.tail,
                start,
                u64::from(count),
                &job.target,
            ));
        } else {
            reported.extend_from_slice(&words[1..=hits as usize]);
        }
        first += u64::from(count);
    }
    Ok(reported)
}
