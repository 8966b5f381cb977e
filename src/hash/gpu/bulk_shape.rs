//! How much bulk-hashing work one dispatch carries on an adapter: one pure function of the
//! adapter's type and limits, the piece size and the memory allowed.
//!
//! SHA-1 and SHA-256 are serial inside a message, so the parallelism is the number of messages
//! in flight ("lanes"). A round carries one slice of each lane's message and the hash state is
//! carried to the next round, so lanes in flight do not depend on the piece size: 4,096 lanes of
//! 64 KiB slices are 256 MiB per round whether the pieces are 16 KiB or 16 MiB.

/// What the sizing rule needs to know about an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdapterProfile {
    pub device_type: wgpu::DeviceType,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
}

impl AdapterProfile {
    #[must_use]
    pub fn of(info: &wgpu::AdapterInfo, limits: &wgpu::Limits) -> Self {
        Self {
            device_type: info.device_type,
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_buffer: limits.max_buffer_size,
        }
    }
}

/// The shape of the bulk rounds on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BulkShape {
    /// Messages hashed side by side: one invocation each per round.
    pub lanes: u32,
    /// Bytes of each message per round (a multiple of 16 KiB, so v2 blocks never straddle
    /// rounds); a message shorter than this takes one round.
    pub slice: u32,
    /// Rounds the host may have submitted and not yet collected: while the device hashes one,
    /// the host fills the next.
    pub in_flight: u32,
}

/// v2 blocks, and the granularity of slices.
const BLOCK: u64 = 16 << 10;
/// Slices past this only lengthen a dispatch; below it a round is mostly overhead.
const MAX_SLICE: u64 = 64 << 10;

impl BulkShape {
    /// Lanes a device of this type needs to hide its latency, and the fewest it should get
    /// before slices are shortened to make room for more.
    fn lane_goal(device_type: wgpu::DeviceType) -> (u64, u64) {
        match device_type {
            // 132 SMs x 4 schedulers x 32 lanes = 16,896 on an H100/H200; 8,192 keeps every
            // scheduler holding a couple of warps, with 4,096 the floor.
            wgpu::DeviceType::DiscreteGpu => (8192, 4096),
            // An iGPU has tens of execution units, each a few SIMD lanes wide.
            wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu => (2048, 1024),
            // lavapipe: a few CPU threads, each running 8-wide SIMD over a workgroup.
            wgpu::DeviceType::Cpu => (256, 64),
            wgpu::DeviceType::Other => (1024, 256),
        }
    }

    /// The shape for pieces (messages) of `piece_len` bytes within `memory` bytes of host
    /// buffers: `lanes x slice x in_flight <= memory`, one round within the storage-binding
    /// and buffer limits.
    #[must_use]
    pub fn for_adapter(adapter: &AdapterProfile, piece_len: u64, memory: u64) -> Self {
        let (goal, floor) = Self::lane_goal(adapter.device_type);
        let in_flight: u64 = if adapter.device_type == wgpu::DeviceType::DiscreteGpu {
            3
        } else {
            2
        };
        let round_budget = (memory / in_flight)
            .min(adapter.max_storage_binding)
            .min(adapter.max_buffer)
            .max(BLOCK);
        let mut slice = piece_len.next_multiple_of(BLOCK).clamp(BLOCK, MAX_SLICE);
        // Shorter slices before fewer lanes: lanes are what keep the device busy.
        while slice > BLOCK && round_budget / slice < floor {
            slice /= 2;
        }
        let lanes = (round_budget / slice).clamp(1, goal);
        Self {
            lanes: u32::try_from(lanes).unwrap_or(u32::MAX),
            slice: u32::try_from(slice).unwrap_or(u32::MAX),
            in_flight: u32::try_from(in_flight).unwrap_or(2),
        }
    }

    /// Bytes one round uploads at most.
    #[must_use]
    pub fn round_bytes(&self) -> u64 {
        u64::from(self.lanes) * u64::from(self.slice)
    }

    /// Host buffer bytes the rounds in flight hold.
    #[must_use]
    pub fn bytes_in_flight(&self) -> u64 {
        self.round_bytes() * u64::from(self.in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn discrete(binding: u64) -> AdapterProfile {
        AdapterProfile {
            device_type: wgpu::DeviceType::DiscreteGpu,
            max_storage_binding: binding,
            max_buffer: 24 * GIB,
        }
    }

    const PIECES: [u64; 6] = [16 << 10, 256 << 10, MIB, 4 * MIB, 16 * MIB, 1000];

    #[test]
    fn a_discrete_card_gets_at_least_4096_lanes_for_every_piece_size() {
        for binding in [2 * GIB, 4 * GIB] {
            for piece in PIECES {
                let shape = BulkShape::for_adapter(
                    &discrete(binding),
                    piece,
                    super::super::DEFAULT_GPU_MEMORY,
                );
                assert!(shape.lanes >= 4096, "{piece}: {shape:?}");
                assert!(
                    shape.bytes_in_flight() <= super::super::DEFAULT_GPU_MEMORY,
                    "{shape:?}"
                );
                assert_eq!(u64::from(shape.slice) % BLOCK, 0);
                assert_eq!(shape.in_flight, 3);
            }
        }
    }

    #[test]
    fn slices_shrink_before_lanes_when_memory_is_short() {
        let shape = BulkShape::for_adapter(&discrete(2 * GIB), 16 * MIB, 192 * MIB);
        assert_eq!(shape.slice, 16 << 10);
        assert_eq!(shape.lanes, 4096);
        let tiny = BulkShape::for_adapter(&discrete(2 * GIB), 16 * MIB, 3 * MIB);
        assert_eq!(tiny.slice, 16 << 10);
        assert_eq!(tiny.lanes, 64);
    }

    #[test]
    fn small_pieces_take_one_round_each() {
        let shape = BulkShape::for_adapter(&discrete(2 * GIB), 16 << 10, GIB);
        assert_eq!(shape.slice, 16 << 10);
        assert_eq!(shape.lanes, 8192);
    }

    #[test]
    fn the_binding_limit_caps_a_round() {
        let small = AdapterProfile {
            max_storage_binding: 128 * MIB,
            ..discrete(128 * MIB)
        };
        let shape = BulkShape::for_adapter(&small, MIB, 8 * GIB);
        assert!(shape.round_bytes() <= 128 * MIB, "{shape:?}");
        assert!(shape.lanes >= 2048, "{shape:?}");
    }

    #[test]
    fn an_integrated_gpu_and_lavapipe_get_fewer_lanes() {
        let igpu = AdapterProfile {
            device_type: wgpu::DeviceType::IntegratedGpu,
            max_storage_binding: 2 * GIB,
            max_buffer: 2 * GIB,
        };
        let shape = BulkShape::for_adapter(&igpu, MIB, 256 * MIB);
        assert_eq!(
            (shape.lanes, shape.slice, shape.in_flight),
            (2048, 64 << 10, 2)
        );

        let lavapipe = AdapterProfile {
            device_type: wgpu::DeviceType::Cpu,
            max_storage_binding: 128 * MIB,
            max_buffer: 2 * GIB,
        };
        let shape = BulkShape::for_adapter(&lavapipe, MIB, 256 * MIB);
        assert_eq!(
            (shape.lanes, shape.slice, shape.in_flight),
            (256, 64 << 10, 2)
        );
        let shape = BulkShape::for_adapter(&lavapipe, 16 << 10, 256 * MIB);
        assert_eq!((shape.lanes, shape.slice), (256, 16 << 10));
    }
}
