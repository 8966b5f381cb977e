//! Host side of the `sha256_pairs` kernel (BitTorrent v2 merkle parents).

use super::context::GpuContext;
use super::pipeline::{buffer, Kernel, STORAGE_IN, STORAGE_INOUT, UNIFORM};
use crate::hash::{HashError, Sha256Digest};

/// Parents of `nodes` taken two by two, in dispatches of at most `max_pairs` pairs.
pub fn parents(
    ctx: &GpuContext,
    kernel: &Kernel,
    nodes: &[Sha256Digest],
    max_pairs: usize,
) -> Result<Vec<Sha256Digest>, HashError> {
    let pairs_total = nodes.len() / 2;
    let per_dispatch = pairs_total.clamp(1, max_pairs.max(1));
    let node_buf = buffer(ctx, "merkle nodes", (per_dispatch * 64) as u64, STORAGE_IN);
    let parent_buf = buffer(
        ctx,
        "merkle parents",
        (per_dispatch * 32) as u64,
        STORAGE_INOUT,
    );
    let params_buf = buffer(ctx, "pair params", 16, UNIFORM);
    let mut out = Vec::with_capacity(pairs_total);
    for chunk in nodes.chunks(per_dispatch * 2) {
        let pairs = u32::try_from(chunk.len() / 2).map_err(|_| ctx.error("too many pairs"))?;
        ctx.queue.write_buffer(&node_buf, 0, chunk.as_flattened());
        ctx.queue
            .write_buffer(&params_buf, 0, bytemuck::cast_slice(&[pairs, 0, 0, 0]));
        kernel.dispatch(ctx, &[&params_buf, &node_buf, &parent_buf], pairs)?;
        let bytes = ctx.read_back(&parent_buf, u64::from(pairs) * 32)?;
        out.extend(
            bytes
                .chunks_exact(32)
                .map(|c| <Sha256Digest>::try_from(c).expect("32")),
        );
    }
    Ok(out)
}
