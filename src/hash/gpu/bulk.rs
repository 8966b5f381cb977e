//! The GPU bulk-hashing engine: thousands of messages in flight, a slice of each per round,
//! hash states carried on the device from round to round.
//!
//! Each round slot owns a mapped upload buffer that the host fills straight from the sources
//! (files are read into it, in parallel, with no copy in between), a device data buffer, lane
//! tables and read-back buffers: all made once. While the device hashes round k the host fills
//! round k+1; only the small states come back. A lane whose message ends in a round is given
//! the next message in the following one, so lanes stay full whatever the message lengths.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;

use rayon::prelude::*;

use super::bulk_kernel::{BulkParams, LaneSpec, FINAL, FIRST};
use super::bulk_shape::BulkShape;
use super::context::GpuContext;
use super::pipeline::{buffer, Kernel, STORAGE_IN, UNIFORM};
use crate::hash::bulk::{
    BlockAlgo, BulkItem, BulkJob, BulkReport, BulkResult, BulkSource, V2_BLOCK,
};
use crate::hash::{HashError, Sha256Digest};

const SHA256_WORDS: u64 = 8;

/// The buffers of one round in flight.
struct RoundSlot {
    /// Host-visible, mapped while the host fills it.
    upload: wgpu::Buffer,
    mapped: bool,
    data: wgpu::Buffer,
    carried_lanes: wgpu::Buffer,
    carried_params: wgpu::Buffer,
    block_lanes: wgpu::Buffer,
    block_params: wgpu::Buffer,
    carried_readback: wgpu::Buffer,
    block_readback: wgpu::Buffer,
    /// Bind groups, made on first use: the carried kernel per algorithm, and the block kernel.
    carried_groups: [Option<wgpu::BindGroup>; 2],
    block_group: Option<wgpu::BindGroup>,
}

/// The engine's buffers, sized for one shape (and reused by any shape that fits).
pub struct BulkEngine {
    shape: BulkShape,
    slots: Vec<RoundSlot>,
    carried_states: wgpu::Buffer,
    block_states: wgpu::Buffer,
}

/// The kernels a run needs (the whole-message kernel for its algorithm and the SHA-256 one
/// for v2 blocks), and the check made before each round (the test hook for device loss).
pub struct BulkKernels<'a> {
    pub sha1: Option<&'a Kernel>,
    pub sha256: &'a Kernel,
    pub before_round: &'a dyn Fn() -> Result<(), HashError>,
}

/// A message in a lane.
struct Active {
    item: BulkItem,
    length: u64,
    consumed: u64,
}

/// What the host must do with a round once the device is done with it.
struct Submitted {
    slot: usize,
    submission: wgpu::SubmissionIndex,
    /// (message id, lane state slot) of whole-message lanes that ended in this round.
    finished: Vec<(u64, u32)>,
    /// (message id, block index within it, block state slot).
    blocks: Vec<(u64, usize, u32)>,
    /// Messages whose last bytes were in this round: answered once it is collected.
    complete: Vec<u64>,
    carried_bytes: u64,
    block_bytes: u64,
    maps: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
    map_count: usize,
}

/// A message between its first round and its answer.
struct Partial {
    digest: Option<Vec<u8>>,
    blocks: Vec<Sha256Digest>,
    readable: bool,
}

/// One lane's share of the upload buffer: where, and which bytes of which message.
struct FillJob {
    lane: usize,
    start: usize,
    from: u64,
    length: usize,
}

impl BulkEngine {
    /// Buffers for `shape`.
    #[must_use]
    pub fn new(ctx: &GpuContext, shape: BulkShape) -> Self {
        let round = shape.round_bytes();
        let lanes = u64::from(shape.lanes);
        let block_lanes = round / V2_BLOCK + lanes;
        let slots = (0..shape.in_flight)
            .map(|_| RoundSlot {
                upload: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("bulk upload"),
                    size: round,
                    usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: true,
                }),
                mapped: true,
                data: buffer(ctx, "bulk data", round, STORAGE_IN),
                carried_lanes: buffer(ctx, "bulk lanes", lanes * 32, STORAGE_IN),
                carried_params: buffer(ctx, "bulk params", 16, UNIFORM),
                block_lanes: buffer(ctx, "block lanes", block_lanes * 32, STORAGE_IN),
                block_params: buffer(ctx, "block params", 16, UNIFORM),
                carried_readback: readback(ctx, lanes * SHA256_WORDS * 4),
                block_readback: readback(ctx, block_lanes * SHA256_WORDS * 4),
                carried_groups: [None, None],
                block_group: None,
            })
            .collect();
        Self {
            shape,
            slots,
            carried_states: buffer(
                ctx,
                "bulk states",
                lanes * SHA256_WORDS * 4,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            ),
            block_states: buffer(
                ctx,
                "block states",
                block_lanes * SHA256_WORDS * 4,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            ),
        }
    }

    /// Whether runs of `shape` fit in these buffers.
    #[must_use]
    pub fn fits(&self, shape: &BulkShape) -> bool {
        shape.lanes <= self.shape.lanes
            && shape.round_bytes() <= self.shape.round_bytes()
            && shape.in_flight <= self.shape.in_flight
    }

    /// Hashes every item: whole messages with `algo` (if any) and their v2 blocks, calling
    /// `sink` as each message is answered (in round order, not item order).
    ///
    /// # Errors
    /// A device failure.
    pub fn run(
        &mut self,
        ctx: &GpuContext,
        kernels: &BulkKernels<'_>,
        shape: BulkShape,
        job: &BulkJob<'_>,
        items: &mut dyn Iterator<Item = BulkItem>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<BulkReport, HashError> {
        let BulkJob { algo, source, .. } = *job;
        debug_assert!(self.fits(&shape));
        let lanes = shape.lanes as usize;
        let slice = u64::from(shape.slice);
        let mut report = BulkReport {
            slice_bytes: shape.slice,
            bytes_in_flight: shape.bytes_in_flight(),
            ..BulkReport::default()
        };
        let mut active: Vec<Option<Active>> = (0..lanes).map(|_| None).collect();
        let mut partial: HashMap<u64, Partial> = HashMap::new();
        let mut queue: VecDeque<Submitted> = VecDeque::new();
        let mut items = items.peekable();
        let mut round = 0u64;
        loop {
            for lane in active.iter_mut().filter(|l| l.is_none()) {
                let Some(item) = items.next() else { break };
                if item.block_bytes > 0 && slice % V2_BLOCK != 0 {
                    return Err(ctx.error("bulk slice is not a whole number of v2 blocks"));
                }
                partial.insert(
                    item.id,
                    Partial {
                        digest: None,
                        blocks: vec![[0; 32]; usize::try_from(item.block_count()).unwrap_or(0)],
                        readable: true,
                    },
                );
                *lane = Some(Active {
                    length: item.length(),
                    item,
                    consumed: 0,
                });
            }
            if active.iter().all(Option::is_none) {
                break;
            }
            let slot = usize::try_from(round % u64::from(shape.in_flight)).expect("small");
            if queue.front().is_some_and(|s| s.slot == slot) {
                let done = queue.pop_front().expect("front");
                self.collect(ctx, done, &mut partial, sink)?;
            }
            (kernels.before_round)()?;
            let submitted = self.submit(
                ctx,
                kernels,
                slot,
                algo,
                slice,
                &mut active,
                &mut partial,
                source,
                &mut report,
            )?;
            queue.push_back(submitted);
            report.rounds_overlapped = report
                .rounds_overlapped
                .max(u32::try_from(queue.len()).unwrap_or(u32::MAX));
            round += 1;
        }
        while let Some(done) = queue.pop_front() {
            self.collect(ctx, done, &mut partial, sink)?;
        }
        report.rounds = round;
        Ok(report)
    }

    /// Lays out, fills and submits one round from the lanes' messages.
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        ctx: &GpuContext,
        kernels: &BulkKernels<'_>,
        slot: usize,
        algo: Option<BlockAlgo>,
        slice: u64,
        active: &mut [Option<Active>],
        partial: &mut HashMap<u64, Partial>,
        source: &dyn BulkSource,
        report: &mut BulkReport,
    ) -> Result<Submitted, HashError> {
        let mut carried = Vec::new();
        let mut blocks = Vec::new();
        let mut jobs = Vec::new();
        let mut finished = Vec::new();
        let mut block_ids = Vec::new();
        let mut complete = Vec::new();
        let mut used = 0usize;
        let mut max_blocks = 0u32;
        for (lane, entry) in active.iter_mut().enumerate() {
            let Some(message) = entry else { continue };
            let chunk = (message.length - message.consumed).min(slice);
            let chunk_len = usize::try_from(chunk).expect("slice fits usize");
            let start = used;
            let word = u32::try_from(start / 4).map_err(|_| ctx.error("round too big"))?;
            let last = message.consumed + chunk == message.length;
            let lane_slot = u32::try_from(lane).expect("lanes fit u32");
            if algo.is_some() {
                let bytes = u32::try_from(chunk).expect("slice fits u32");
                carried.push(LaneSpec {
                    word,
                    bytes,
                    flags: if message.consumed == 0 { FIRST } else { 0 }
                        | if last { FINAL } else { 0 },
                    slot: lane_slot,
                    length_lo: message.length as u32,
                    length_hi: (message.length >> 32) as u32,
                    reserved: [0; 2],
                });
                max_blocks = max_blocks.max(bytes / 64);
                if last {
                    finished.push((message.item.id, lane_slot));
                }
            }
            // v2 blocks inside this slice: slices are whole blocks, so none straddles rounds.
            let block_end = message.item.block_bytes.min(message.consumed + chunk);
            let mut at = message.consumed;
            while at < block_end {
                let bytes = (block_end - at).min(V2_BLOCK);
                let offset = usize::try_from(at - message.consumed).expect("within a slice");
                let block_slot = u32::try_from(blocks.len()).expect("block lanes fit u32");
                blocks.push(LaneSpec {
                    word: word + u32::try_from(offset / 4).expect("within a slice"),
                    bytes: u32::try_from(bytes).expect("a block"),
                    flags: FIRST | FINAL,
                    slot: block_slot,
                    length_lo: bytes as u32,
                    length_hi: 0,
                    reserved: [0; 2],
                });
                let index = usize::try_from(at / V2_BLOCK).expect("block index");
                block_ids.push((message.item.id, index, block_slot));
                at += bytes;
            }
            jobs.push(FillJob {
                lane,
                start,
                from: message.consumed,
                length: chunk_len,
            });
            used += chunk_len.next_multiple_of(64);
            message.consumed += chunk;
            if last {
                complete.push(message.item.id);
            }
        }
        let block_max = blocks.iter().map(|b| b.bytes / 64).max().unwrap_or(0);

        // Fill the mapped upload buffer straight from the sources, one lane per task.
        let unreadable = self.fill(ctx, slot, used, &jobs, active, source)?;
        for lane in unreadable {
            if let Some(message) = &active[lane] {
                if let Some(p) = partial.get_mut(&message.item.id) {
                    p.readable = false;
                }
            }
        }
        for entry in active.iter_mut() {
            if entry.as_ref().is_some_and(|m| m.consumed == m.length) {
                *entry = None;
            }
        }

        let copy_bytes = (used as u64).next_multiple_of(4);
        let carried_kernel = match algo {
            Some(BlockAlgo::Sha1) => kernels.sha1,
            Some(BlockAlgo::Sha256) => Some(kernels.sha256),
            None => None,
        };
        let algo_index = usize::from(algo == Some(BlockAlgo::Sha256));
        let round = &mut self.slots[slot];
        if let Some(kernel) = carried_kernel {
            if round.carried_groups[algo_index].is_none() {
                round.carried_groups[algo_index] = Some(kernel.bind_group(
                    ctx,
                    &[
                        &round.carried_params,
                        &round.carried_lanes,
                        &round.data,
                        &self.carried_states,
                    ],
                ));
            }
        }
        if !blocks.is_empty() && round.block_group.is_none() {
            round.block_group = Some(kernels.sha256.bind_group(
                ctx,
                &[
                    &round.block_params,
                    &round.block_lanes,
                    &round.data,
                    &self.block_states,
                ],
            ));
        }
        let state_words = algo.map_or(0, |a| a.state_words() as u64);
        let carried_bytes = if carried.is_empty() {
            0
        } else {
            self.shape.lanes as u64 * state_words * 4
        };
        let block_bytes = blocks.len() as u64 * SHA256_WORDS * 4;
        let submission = ctx.scoped("submitting a bulk round", || {
            if !carried.is_empty() {
                ctx.queue
                    .write_buffer(&round.carried_lanes, 0, bytemuck::cast_slice(&carried));
                let params = BulkParams {
                    lanes: carried.len() as u32,
                    max_blocks,
                    reserved: [0; 2],
                };
                ctx.queue
                    .write_buffer(&round.carried_params, 0, bytemuck::bytes_of(&params));
            }
            if !blocks.is_empty() {
                ctx.queue
                    .write_buffer(&round.block_lanes, 0, bytemuck::cast_slice(&blocks));
                let params = BulkParams {
                    lanes: blocks.len() as u32,
                    max_blocks: block_max,
                    reserved: [0; 2],
                };
                ctx.queue
                    .write_buffer(&round.block_params, 0, bytemuck::bytes_of(&params));
            }
            let mut encoder = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            if copy_bytes > 0 {
                encoder.copy_buffer_to_buffer(&round.upload, 0, &round.data, 0, copy_bytes);
            }
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                if let (Some(kernel), Some(group)) =
                    (carried_kernel, &round.carried_groups[algo_index])
                {
                    if !carried.is_empty() {
                        kernel.record(ctx, &mut pass, group, carried.len() as u32)?;
                    }
                }
                if let Some(group) = &round.block_group {
                    if !blocks.is_empty() {
                        kernels
                            .sha256
                            .record(ctx, &mut pass, group, blocks.len() as u32)?;
                    }
                }
            }
            if carried_bytes > 0 {
                encoder.copy_buffer_to_buffer(
                    &self.carried_states,
                    0,
                    &round.carried_readback,
                    0,
                    carried_bytes,
                );
            }
            if block_bytes > 0 {
                encoder.copy_buffer_to_buffer(
                    &self.block_states,
                    0,
                    &round.block_readback,
                    0,
                    block_bytes,
                );
            }
            Ok(ctx.queue.submit([encoder.finish()]))
        })?;

        let (sender, maps) = mpsc::channel();
        let mut map_count = 1;
        let upload_done = sender.clone();
        round.upload.map_async(wgpu::MapMode::Write, .., move |r| {
            let _ = upload_done.send(r);
        });
        for (buffer, bytes) in [
            (&round.carried_readback, carried_bytes),
            (&round.block_readback, block_bytes),
        ] {
            if bytes > 0 {
                let done = sender.clone();
                buffer.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
                    let _ = done.send(r);
                });
                map_count += 1;
            }
        }
        report.lanes_per_dispatch = report
            .lanes_per_dispatch
            .max(u32::try_from(carried.len()).unwrap_or(u32::MAX));
        report.block_lanes_per_dispatch = report
            .block_lanes_per_dispatch
            .max(u32::try_from(blocks.len()).unwrap_or(u32::MAX));
        Ok(Submitted {
            slot,
            submission,
            finished,
            blocks: block_ids,
            complete,
            carried_bytes,
            block_bytes,
            maps,
            map_count,
        })
    }

    /// Fills the slot's upload buffer; returns the lanes whose bytes could not all be read.
    fn fill(
        &mut self,
        ctx: &GpuContext,
        slot: usize,
        used: usize,
        jobs: &[FillJob],
        active: &[Option<Active>],
        source: &dyn BulkSource,
    ) -> Result<Vec<usize>, HashError> {
        let round = &mut self.slots[slot];
        debug_assert!(round.mapped);
        if used == 0 {
            round.upload.unmap();
            round.mapped = false;
            return Ok(Vec::new());
        }
        let unreadable = {
            let mut view = round
                .upload
                .get_mapped_range_mut(..used as u64)
                .map_err(|e| ctx.error(format!("mapping an upload buffer: {e}")))?;
            let mut whole = view.slice(..);
            let raw = whole.as_raw_element_ptr().as_ptr();
            // SAFETY: the view maps `used` writable bytes for as long as `view` lives, nothing
            // else touches them meanwhile, and any byte pattern is a valid u8. The bytes are
            // only written (by `read` and copies), never read back, as write-combined memory
            // wants; the jobs' ranges are disjoint, so each task gets its own `&mut`.
            let bytes: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(raw, used) };
            let mut pieces: Vec<(&FillJob, &mut [u8])> = Vec::with_capacity(jobs.len());
            let mut rest = bytes;
            let mut at = 0;
            for job in jobs {
                let (_, tail) = rest.split_at_mut(job.start - at);
                let (mine, tail) = tail.split_at_mut(job.length);
                pieces.push((job, mine));
                rest = tail;
                at = job.start + job.length;
            }
            let unreadable: Vec<usize> = pieces
                .into_par_iter()
                .filter_map(|(job, dst)| {
                    let message = active[job.lane].as_ref().expect("a filled lane");
                    (!fill_range(&message.item, job.from, dst, source)).then_some(job.lane)
                })
                .collect();
            drop(view);
            unreadable
        };
        round.upload.unmap();
        round.mapped = false;
        Ok(unreadable)
    }

    /// Waits for a round, takes its states and answers the messages it completed.
    fn collect(
        &mut self,
        ctx: &GpuContext,
        done: Submitted,
        partial: &mut HashMap<u64, Partial>,
        sink: &mut dyn FnMut(BulkResult),
    ) -> Result<(), HashError> {
        ctx.wait_for(done.submission)?;
        for _ in 0..done.map_count {
            done.maps
                .recv_timeout(std::time::Duration::from_secs(5))
                .map_err(|_| ctx.error("buffer map never completed"))?
                .map_err(|e| ctx.error(format!("mapping a bulk buffer: {e}")))?;
        }
        let round = &mut self.slots[done.slot];
        round.mapped = true;
        if done.carried_bytes > 0 {
            let words = done.carried_bytes as usize / 4 / self.shape.lanes as usize;
            {
                let view = round
                    .carried_readback
                    .get_mapped_range(..done.carried_bytes)
                    .map_err(|e| ctx.error(format!("reading bulk states: {e}")))?;
                let states: &[u32] = bytemuck::cast_slice(&view);
                for (id, lane) in &done.finished {
                    let at = *lane as usize * words;
                    let digest = states[at..at + words]
                        .iter()
                        .flat_map(|w| w.to_be_bytes())
                        .collect();
                    if let Some(p) = partial.get_mut(id) {
                        p.digest = Some(digest);
                    }
                }
            }
            round.carried_readback.unmap();
        }
        if done.block_bytes > 0 {
            {
                let view = round
                    .block_readback
                    .get_mapped_range(..done.block_bytes)
                    .map_err(|e| ctx.error(format!("reading block states: {e}")))?;
                let states: &[u32] = bytemuck::cast_slice(&view);
                for (id, index, lane) in &done.blocks {
                    let at = *lane as usize * 8;
                    let mut digest = [0u8; 32];
                    for (dst, w) in digest.chunks_exact_mut(4).zip(&states[at..at + 8]) {
                        dst.copy_from_slice(&w.to_be_bytes());
                    }
                    if let Some(p) = partial.get_mut(id) {
                        p.blocks[*index] = digest;
                    }
                }
            }
            round.block_readback.unmap();
        }
        for id in done.complete {
            if let Some(p) = partial.remove(&id) {
                sink(BulkResult {
                    id,
                    digest: p.digest,
                    blocks: p.blocks,
                    readable: p.readable,
                });
            }
        }
        Ok(())
    }
}

fn readback(ctx: &GpuContext, size: u64) -> wgpu::Buffer {
    buffer(
        ctx,
        "bulk readback",
        size,
        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
    )
}

/// Reads bytes `from..from + dst.len()` of `item` into `dst` (zeros for pad extents).
fn fill_range(item: &BulkItem, from: u64, dst: &mut [u8], source: &dyn BulkSource) -> bool {
    let mut ok = true;
    let mut extent_start = 0u64;
    let end = from + dst.len() as u64;
    for extent in &item.extents {
        let extent_end = extent_start + extent.length;
        let lo = from.max(extent_start);
        let hi = end.min(extent_end);
        if lo < hi {
            let out = &mut dst[usize::try_from(lo - from).expect("slice")..]
                [..usize::try_from(hi - lo).expect("slice")];
            match extent.source {
                Some(src) => ok &= source.read(src, extent.offset + (lo - extent_start), out),
                None => out.fill(0),
            }
        }
        if extent_end >= end {
            break;
        }
        extent_start = extent_end;
    }
    ok
}
