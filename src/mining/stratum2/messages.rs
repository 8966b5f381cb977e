//! The Stratum V2 messages a miner receives, decoded from a frame's type and payload with the
//! reference implementation's message types into owned values (never panicking on bad input),
//! and the few a miner sends.

use binary_sv2::{from_bytes, Str0255, B032, U256};
use common_messages_sv2::{
    Protocol, SetupConnection, SetupConnectionError, SetupConnectionSuccess,
    MESSAGE_TYPE_RECONNECT, MESSAGE_TYPE_SETUP_CONNECTION_ERROR,
    MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS,
};
use mining_sv2::{
    CloseChannel, NewExtendedMiningJob, NewMiningJob, OpenExtendedMiningChannel,
    OpenExtendedMiningChannelSuccess, OpenMiningChannelError, OpenStandardMiningChannel,
    OpenStandardMiningChannelSuccess, SetExtranoncePrefix, SetNewPrevHash, SetTarget,
    SubmitSharesError, SubmitSharesExtended, SubmitSharesStandard, SubmitSharesSuccess,
    MESSAGE_TYPE_CLOSE_CHANNEL, MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH,
    MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB, MESSAGE_TYPE_NEW_MINING_JOB,
    MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS, MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR,
    MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS, MESSAGE_TYPE_SET_EXTRANONCE_PREFIX,
    MESSAGE_TYPE_SET_TARGET, MESSAGE_TYPE_SUBMIT_SHARES_ERROR, MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS,
};

/// SetupConnection flag (mining protocol, miner -> pool): only standard jobs, no group channel.
pub const REQUIRES_STANDARD_JOBS: u32 = 1;
/// SetupConnection flag (mining protocol, miner -> pool): the miner rolls version bits.
pub const REQUIRES_VERSION_ROLLING: u32 = 1 << 2;
/// SetupConnection.Success flag (pool -> miner): the version must not be rolled.
pub const REQUIRES_FIXED_VERSION: u32 = 1;
/// SetupConnection.Success flag (pool -> miner): only extended channels are accepted.
pub const REQUIRES_EXTENDED_CHANNELS: u32 = 1 << 1;
/// The only protocol version there is.
pub const PROTOCOL_VERSION: u16 = 2;

/// A frame whose payload does not decode as the message its type says.
#[derive(Debug, thiserror::Error)]
#[error("message type {msg_type:#04x}: {error}")]
pub struct FrameError {
    pub msg_type: u8,
    pub error: binary_sv2::Error,
}

/// What a pool sends a miner with standard channels, in owned form.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolMessage {
    SetupSuccess {
        used_version: u16,
        flags: u32,
    },
    SetupError {
        flags: u32,
        code: String,
    },
    OpenSuccess {
        request_id: u32,
        channel_id: u32,
        /// Little-endian 256-bit target.
        target: [u8; 32],
        extranonce_prefix: Vec<u8>,
        group_channel_id: u32,
    },
    OpenExtendedSuccess {
        request_id: u32,
        channel_id: u32,
        /// Little-endian 256-bit target.
        target: [u8; 32],
        /// Bytes of extranonce the miner rolls, after the prefix.
        extranonce_size: u16,
        extranonce_prefix: Vec<u8>,
        group_channel_id: u32,
    },
    OpenError {
        request_id: u32,
        code: String,
    },
    /// A job with the coinbase split around the extranonce (extended channels).
    NewExtendedJob {
        channel_id: u32,
        job_id: u32,
        min_ntime: Option<u32>,
        version: u32,
        version_rolling_allowed: bool,
        /// The coinbase's merkle branch, deepest first, internal byte order.
        merkle_path: Vec<[u8; 32]>,
        /// The coinbase without witness, before and after `extranonce_prefix || extranonce`.
        coinbase_prefix: Vec<u8>,
        coinbase_suffix: Vec<u8>,
    },
    SetExtranoncePrefix {
        channel_id: u32,
        extranonce_prefix: Vec<u8>,
    },
    NewJob {
        channel_id: u32,
        job_id: u32,
        /// `None` for a future job, which waits for the `SetNewPrevHash` that names it.
        min_ntime: Option<u32>,
        version: u32,
        /// Internal (wire) byte order.
        merkle_root: [u8; 32],
    },
    SetNewPrevHash {
        channel_id: u32,
        job_id: u32,
        /// Internal (wire) byte order.
        prev_hash: [u8; 32],
        min_ntime: u32,
        nbits: u32,
    },
    SetTarget {
        channel_id: u32,
        /// Little-endian 256-bit target.
        maximum_target: [u8; 32],
    },
    SubmitSuccess {
        channel_id: u32,
        last_sequence_number: u32,
        new_submits_accepted_count: u32,
    },
    SubmitError {
        channel_id: u32,
        sequence_number: u32,
        code: String,
    },
    CloseChannel {
        channel_id: u32,
        reason: String,
    },
    /// The pool asks to reconnect (this client only ever goes back to the same pool).
    Reconnect,
    /// A message this client does not use (an extension's, or one for other roles).
    Other {
        extension_type: u16,
        msg_type: u8,
    },
}

fn decode_as<'a, T: binary_sv2::Decodable<'a>>(
    msg_type: u8,
    payload: &'a mut [u8],
) -> Result<T, FrameError> {
    from_bytes::<T>(payload).map_err(|error| FrameError { msg_type, error })
}

/// Decodes one frame's payload. `extension_type` is the header's, without the channel bit.
///
/// # Errors
/// A payload that does not decode as its message type.
pub fn decode(
    extension_type: u16,
    msg_type: u8,
    payload: &mut [u8],
) -> Result<PoolMessage, FrameError> {
    if extension_type != 0 {
        return Ok(PoolMessage::Other {
            extension_type,
            msg_type,
        });
    }
    Ok(match msg_type {
        MESSAGE_TYPE_SETUP_CONNECTION_SUCCESS => {
            let m: SetupConnectionSuccess = decode_as(msg_type, payload)?;
            PoolMessage::SetupSuccess {
                used_version: m.used_version,
                flags: m.flags,
            }
        }
        MESSAGE_TYPE_SETUP_CONNECTION_ERROR => {
            let m: SetupConnectionError = decode_as(msg_type, payload)?;
            PoolMessage::SetupError {
                flags: m.flags,
                code: m.error_code.as_utf8_or_hex(),
            }
        }
        MESSAGE_TYPE_RECONNECT => PoolMessage::Reconnect,
        MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL_SUCCESS => {
            let m: OpenStandardMiningChannelSuccess = decode_as(msg_type, payload)?;
            PoolMessage::OpenSuccess {
                request_id: m.request_id,
                channel_id: m.channel_id,
                target: m.target.to_array(),
                extranonce_prefix: m.extranonce_prefix.to_owned_bytes(),
                group_channel_id: m.group_channel_id,
            }
        }
        MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL_SUCCESS => {
            let m: OpenExtendedMiningChannelSuccess = decode_as(msg_type, payload)?;
            PoolMessage::OpenExtendedSuccess {
                request_id: m.request_id,
                channel_id: m.channel_id,
                target: m.target.to_array(),
                extranonce_size: m.extranonce_size,
                extranonce_prefix: m.extranonce_prefix.to_owned_bytes(),
                group_channel_id: m.group_channel_id,
            }
        }
        MESSAGE_TYPE_NEW_EXTENDED_MINING_JOB => {
            let m: NewExtendedMiningJob = decode_as(msg_type, payload)?;
            PoolMessage::NewExtendedJob {
                channel_id: m.channel_id,
                job_id: m.job_id,
                min_ntime: m.min_ntime.into_inner(),
                version: m.version,
                version_rolling_allowed: m.version_rolling_allowed,
                merkle_path: m
                    .merkle_path
                    .into_inner()
                    .into_iter()
                    .map(U256::to_array)
                    .collect(),
                coinbase_prefix: m.coinbase_tx_prefix.to_owned_bytes(),
                coinbase_suffix: m.coinbase_tx_suffix.to_owned_bytes(),
            }
        }
        MESSAGE_TYPE_SET_EXTRANONCE_PREFIX => {
            let m: SetExtranoncePrefix = decode_as(msg_type, payload)?;
            PoolMessage::SetExtranoncePrefix {
                channel_id: m.channel_id,
                extranonce_prefix: m.extranonce_prefix.to_owned_bytes(),
            }
        }
        MESSAGE_TYPE_OPEN_MINING_CHANNEL_ERROR => {
            let m: OpenMiningChannelError = decode_as(msg_type, payload)?;
            PoolMessage::OpenError {
                request_id: m.request_id,
                code: m.error_code.as_utf8_or_hex(),
            }
        }
        MESSAGE_TYPE_NEW_MINING_JOB => {
            let m: NewMiningJob = decode_as(msg_type, payload)?;
            PoolMessage::NewJob {
                channel_id: m.channel_id,
                job_id: m.job_id,
                min_ntime: m.min_ntime.into_inner(),
                version: m.version,
                merkle_root: m.merkle_root.to_array(),
            }
        }
        MESSAGE_TYPE_MINING_SET_NEW_PREV_HASH => {
            let m: SetNewPrevHash = decode_as(msg_type, payload)?;
            PoolMessage::SetNewPrevHash {
                channel_id: m.channel_id,
                job_id: m.job_id,
                prev_hash: m.prev_hash.to_array(),
                min_ntime: m.min_ntime,
                nbits: m.nbits,
            }
        }
        MESSAGE_TYPE_SET_TARGET => {
            let m: SetTarget = decode_as(msg_type, payload)?;
            PoolMessage::SetTarget {
                channel_id: m.channel_id,
                maximum_target: m.maximum_target.to_array(),
            }
        }
        MESSAGE_TYPE_SUBMIT_SHARES_SUCCESS => {
            let m: SubmitSharesSuccess = decode_as(msg_type, payload)?;
            PoolMessage::SubmitSuccess {
                channel_id: m.channel_id,
                last_sequence_number: m.last_sequence_number,
                new_submits_accepted_count: m.new_submits_accepted_count,
            }
        }
        MESSAGE_TYPE_SUBMIT_SHARES_ERROR => {
            let m: SubmitSharesError = decode_as(msg_type, payload)?;
            PoolMessage::SubmitError {
                channel_id: m.channel_id,
                sequence_number: m.sequence_number,
                code: m.error_code.as_utf8_or_hex(),
            }
        }
        MESSAGE_TYPE_CLOSE_CHANNEL => {
            let m: CloseChannel = decode_as(msg_type, payload)?;
            PoolMessage::CloseChannel {
                channel_id: m.channel_id,
                reason: m.reason_code.as_utf8_or_hex(),
            }
        }
        other => PoolMessage::Other {
            extension_type,
            msg_type: other,
        },
    })
}

/// A string field, cut to the 255 bytes SV2 allows (at a character boundary).
#[must_use]
pub fn str0255(text: &str) -> Str0255<'_> {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match Str0255::try_from(&text[..end]) {
        Ok(field) => field,
        // At most 255 bytes always fits; an empty string is the harmless fallback.
        Err(_) => Str0255::try_from("").expect("an empty string fits"),
    }
}

/// The easiest target: the pool may choose any.
const ANY_TARGET: [u8; 32] = [0xff; 32];

/// The miner's `SetupConnection` for the mining protocol.
#[must_use]
pub fn setup_connection(host: &str, port: u16, flags: u32) -> SetupConnection<'_> {
    SetupConnection {
        protocol: Protocol::MiningProtocol,
        min_version: PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        flags,
        endpoint_host: str0255(host),
        endpoint_port: port,
        vendor: str0255("peerhash"),
        hardware_version: str0255(""),
        firmware: str0255(env!("CARGO_PKG_VERSION")),
        device_id: str0255(""),
    }
}

/// `OpenStandardMiningChannel`, accepting any target the pool chooses.
#[must_use]
pub fn open_standard_channel(
    request_id: u32,
    user: &str,
    nominal_hash_rate: f32,
) -> OpenStandardMiningChannel<'_> {
    OpenStandardMiningChannel {
        request_id,
        user_identity: str0255(user),
        nominal_hash_rate,
        max_target: U256::from(&ANY_TARGET),
    }
}

/// `OpenExtendedMiningChannel`, accepting any target, asking for `min_extranonce_size` bytes.
#[must_use]
pub fn open_extended_channel(
    request_id: u32,
    user: &str,
    nominal_hash_rate: f32,
    min_extranonce_size: u16,
) -> OpenExtendedMiningChannel<'_> {
    OpenExtendedMiningChannel {
        request_id,
        user_identity: str0255(user),
        nominal_hash_rate,
        max_target: U256::from(&ANY_TARGET),
        min_extranonce_size,
    }
}

/// `SubmitSharesExtended`; `None` when the extranonce is longer than 32 bytes.
#[must_use]
pub fn submit_extended(
    standard: SubmitSharesStandard,
    extranonce: &[u8],
) -> Option<SubmitSharesExtended<'_>> {
    Some(SubmitSharesExtended {
        channel_id: standard.channel_id,
        sequence_number: standard.sequence_number,
        job_id: standard.job_id,
        nonce: standard.nonce,
        ntime: standard.ntime,
        version: standard.version,
        extranonce: B032::try_from(extranonce).ok()?,
    })
}

/// `SubmitSharesStandard`.
#[must_use]
pub fn submit_standard(
    channel_id: u32,
    sequence_number: u32,
    job_id: u32,
    nonce: u32,
    ntime: u32,
    version: u32,
) -> SubmitSharesStandard {
    SubmitSharesStandard {
        channel_id,
        sequence_number,
        job_id,
        nonce,
        ntime,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use binary_sv2::to_bytes;

    #[test]
    fn decodes_what_the_pool_sends_and_refuses_short_payloads() {
        let job = NewMiningJob {
            channel_id: 3,
            job_id: 9,
            min_ntime: binary_sv2::Sv2Option::new(None),
            version: 0x2000_0000,
            merkle_root: U256::from(&[7; 32]),
        };
        let mut bytes = to_bytes(job).expect("encodes");
        let decoded = decode(0, MESSAGE_TYPE_NEW_MINING_JOB, &mut bytes).expect("decodes");
        assert_eq!(
            decoded,
            PoolMessage::NewJob {
                channel_id: 3,
                job_id: 9,
                min_ntime: None,
                version: 0x2000_0000,
                merkle_root: [7; 32],
            }
        );
        bytes.truncate(10);
        assert!(decode(0, MESSAGE_TYPE_NEW_MINING_JOB, &mut bytes).is_err());
        assert!(matches!(
            decode(0, 0xfe, &mut []),
            Ok(PoolMessage::Other { msg_type: 0xfe, .. })
        ));
        assert!(matches!(
            decode(2, MESSAGE_TYPE_NEW_MINING_JOB, &mut []),
            Ok(PoolMessage::Other { .. })
        ));
        assert_eq!(str0255(&"é".repeat(200)).as_utf8_or_hex().len(), 254);
    }
}
