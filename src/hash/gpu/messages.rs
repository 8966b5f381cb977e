//! Host side of the `sha1_blocks`/`sha256_blocks` kernels: messages of any length hash in
//! rounds of bounded dispatches, each lane's state carried from round to round. The host pads
//! each message's final chunk, so the kernels only ever compress whole blocks.

use super::context::GpuContext;
use super::pipeline::{buffer, Kernel, STORAGE_IN, STORAGE_INOUT, UNIFORM};
use crate::hash::cpu::SHA256_IV;
use crate::hash::HashError;

const SHA1_IV: [u32; 5] = [
    0x6745_2301,
    0xefcd_ab89,
    0x98ba_dcfe,
    0x1032_5476,
    0xc3d2_e1f0,
];

/// Which compression the kernel does; both pad the same way (big-endian bit length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockAlgo {
    Sha1,
    Sha256,
}

impl BlockAlgo {
    fn iv(self) -> &'static [u32] {
        match self {
            BlockAlgo::Sha1 => &SHA1_IV,
            BlockAlgo::Sha256 => &SHA256_IV,
        }
    }

    fn state_words(self) -> usize {
        self.iv().len()
    }
}

/// How much one round may upload and how long one lane may run.
#[derive(Clone, Copy, Debug)]
pub struct RoundLimits {
    /// Bytes of message data per round (the data buffer's size).
    pub bytes_per_round: usize,
    /// 64-byte blocks one invocation compresses per round. lavapipe counts every loop
    /// iteration toward a limit of 65,535 per invocation; real GPUs have a watchdog.
    pub blocks_per_lane: usize,
}

impl RoundLimits {
    #[must_use]
    pub fn for_device(ctx: &GpuContext) -> Self {
        let binding =
            usize::try_from(ctx.limits.max_storage_buffer_binding_size).unwrap_or(usize::MAX);
        let bytes_per_round = binding.min(64 << 20) / 64 * 64;
        let blocks_per_lane = if ctx.is_software() { 16 << 10 } else { 4 << 10 };
        Self {
            bytes_per_round,
            blocks_per_lane,
        }
    }
}

/// Where one message stands.
struct Lane<'a> {
    message: &'a [u8],
    consumed: usize,
    done: bool,
}

impl Lane<'_> {
    /// Blocks still to compress, padding included.
    fn blocks_left(&self) -> usize {
        (self.message.len() - self.consumed + 9).div_ceil(64)
    }

    /// Appends up to `max_blocks` blocks of this message to `out` (padding the final chunk)
    /// and returns how many blocks were appended. `max_blocks >= 2` guarantees progress.
    fn take_chunk(&mut self, max_blocks: usize, out: &mut Vec<u8>) -> usize {
        let rest = &self.message[self.consumed..];
        if rest.len() + 9 <= max_blocks * 64 {
            let start = out.len();
            out.extend_from_slice(rest);
            out.push(0x80);
            let blocks = (rest.len() + 9).div_ceil(64);
            out.resize(start + blocks * 64 - 8, 0);
            let bits = (self.message.len() as u64).wrapping_mul(8);
            out.extend_from_slice(&bits.to_be_bytes());
            self.consumed = self.message.len();
            self.done = true;
            blocks
        } else {
            let blocks = max_blocks.min(rest.len() / 64);
            out.extend_from_slice(&rest[..blocks * 64]);
            self.consumed += blocks * 64;
            blocks
        }
    }
}

/// Digests of `messages`, each as the big-endian bytes of the final state.
///
/// # Errors
/// A device failure.
pub fn digest_messages(
    ctx: &GpuContext,
    kernel: &Kernel,
    algo: BlockAlgo,
    messages: &[&[u8]],
    limits: RoundLimits,
) -> Result<Vec<Vec<u8>>, HashError> {
    let words = algo.state_words();
    let mut states: Vec<u32> = algo.iv().repeat(messages.len());
    let mut lanes: Vec<Lane> = messages
        .iter()
        .map(|message| Lane {
            message,
            consumed: 0,
            done: false,
        })
        .collect();
    let budget_blocks = (limits.bytes_per_round / 64).max(2);
    let max_lanes = budget_blocks / 2;
    let total_blocks: usize = lanes.iter().map(Lane::blocks_left).sum();
    let data_buf = buffer(
        ctx,
        "message data",
        (budget_blocks.min(total_blocks) * 64) as u64,
        STORAGE_IN,
    );
    let lane_buf = buffer(
        ctx,
        "lanes",
        (max_lanes.min(messages.len()) * 8) as u64,
        STORAGE_IN,
    );
    let state_bytes = (max_lanes.min(messages.len()) * words * 4) as u64;
    let state_buf = buffer(ctx, "states", state_bytes, STORAGE_INOUT);
    let params_buf = buffer(ctx, "params", 16, UNIFORM);
    let mut upload = Vec::with_capacity(budget_blocks * 64);
    let mut next = 0; // messages before `next` are finished: lanes go in order.
    while next < lanes.len() {
        let active: Vec<usize> = (next..lanes.len())
            .filter(|&i| !lanes[i].done)
            .take(max_lanes)
            .collect();
        let widest = active
            .iter()
            .map(|&i| lanes[i].blocks_left())
            .max()
            .unwrap_or(2);
        let per_lane = widest.clamp(2, limits.blocks_per_lane.max(2));
        let round: Vec<usize> = active
            .into_iter()
            .take((budget_blocks / per_lane).max(1))
            .collect();
        upload.clear();
        let mut lane_info: Vec<u32> = Vec::with_capacity(round.len() * 2);
        let mut round_states: Vec<u32> = Vec::with_capacity(round.len() * words);
        for &i in &round {
            let offset = u32::try_from(upload.len() / 4).map_err(|_| ctx.error("round too big"))?;
            let blocks = lanes[i].take_chunk(per_lane, &mut upload);
            lane_info.extend([
                offset,
                u32::try_from(blocks).expect("blocks_per_lane is small"),
            ]);
            round_states.extend_from_slice(&states[i * words..(i + 1) * words]);
        }
        let lane_count = u32::try_from(round.len()).map_err(|_| ctx.error("too many lanes"))?;
        ctx.queue.write_buffer(&data_buf, 0, &upload);
        ctx.queue
            .write_buffer(&lane_buf, 0, bytemuck::cast_slice(&lane_info));
        ctx.queue
            .write_buffer(&state_buf, 0, bytemuck::cast_slice(&round_states));
        ctx.queue
            .write_buffer(&params_buf, 0, bytemuck::cast_slice(&[lane_count, 0, 0, 0]));
        kernel.dispatch(
            ctx,
            &[&params_buf, &lane_buf, &data_buf, &state_buf],
            lane_count,
        )?;
        let bytes = ctx.read_back(&state_buf, (round.len() * words * 4) as u64)?;
        let new_states: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        for (&i, state) in round.iter().zip(new_states.chunks_exact(words)) {
            states[i * words..(i + 1) * words].copy_from_slice(state);
        }
        while next < lanes.len() && lanes[next].done {
            next += 1;
        }
    }
    Ok(states
        .chunks_exact(words)
        .map(|state| state.iter().flat_map(|w| w.to_be_bytes()).collect())
        .collect())
}
