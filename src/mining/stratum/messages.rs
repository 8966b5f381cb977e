//! Stratum v1 messages: parsing what a pool sends (never panicking on bad input) and writing
//! what the miner sends.

use bitcoin::Target;
use serde_json::{json, Value};

/// A line from the pool that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("{method}: {problem}")]
    BadParams { method: String, problem: String },
    #[error("neither a response (numeric id) nor a notification (method): {0}")]
    Unrecognized(String),
    #[error("difficulty {0} makes no sense (must be a positive finite number)")]
    BadDifficulty(String),
}

/// A `mining.notify`, decoded into header byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notify {
    pub job_id: String,
    /// Previous block hash in internal (wire) byte order.
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: i32,
    pub bits: u32,
    pub time: u32,
    pub clean: bool,
}

/// Everything a pool may send.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Response {
        id: u64,
        result: Value,
        /// `(code, message)` from an `error` array or object.
        error: Option<(i64, String)>,
    },
    Notify(Notify),
    SetDifficulty(f64),
    SetExtranonce {
        extranonce1: Vec<u8>,
        extranonce2_size: usize,
    },
    Reconnect {
        wait_seconds: u64,
    },
    SetVersionMask(u32),
    /// A notification this client does not use (logged and ignored).
    Other(String),
}

fn bad(method: &str, problem: impl Into<String>) -> MessageError {
    MessageError::BadParams {
        method: method.to_owned(),
        problem: problem.into(),
    }
}

fn hex_param(
    method: &str,
    params: &[Value],
    i: usize,
    name: &str,
) -> Result<Vec<u8>, MessageError> {
    let text = params
        .get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(method, format!("{name} (param {i}) is not a string")))?;
    hex::decode(text).map_err(|e| bad(method, format!("{name} is not hex: {e}")))
}

/// A big-endian hex u32, as Stratum writes version, nbits and ntime.
fn u32_param(method: &str, params: &[Value], i: usize, name: &str) -> Result<u32, MessageError> {
    let bytes: [u8; 4] = hex_param(method, params, i, name)?
        .try_into()
        .map_err(|_| bad(method, format!("{name} must be 8 hex digits")))?;
    Ok(u32::from_be_bytes(bytes))
}

fn hash_param(method: &str, value: &Value, name: &str) -> Result<[u8; 32], MessageError> {
    let text = value
        .as_str()
        .ok_or_else(|| bad(method, format!("{name} is not a string")))?;
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| bad(method, format!("{name} must be 64 hex digits")))
}

fn parse_notify(params: &[Value]) -> Result<Notify, MessageError> {
    const M: &str = "mining.notify";
    if params.len() < 9 {
        return Err(bad(M, format!("expected 9 params, got {}", params.len())));
    }
    let job_id = match &params[0] {
        Value::String(id) if !id.is_empty() && id.len() <= 128 => id.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(bad(M, "job id is not a short string")),
    };
    let mut prev_hash = hash_param(M, &params[1], "prevhash")?;
    // Stratum sends the internal-order hash with each 4-byte word swapped.
    for word in prev_hash.chunks_exact_mut(4) {
        word.reverse();
    }
    let branch = params[4]
        .as_array()
        .ok_or_else(|| bad(M, "merkle branch is not a list"))?
        .iter()
        .map(|h| hash_param(M, h, "merkle branch entry"))
        .collect::<Result<Vec<_>, _>>()?;
    if branch.len() > 32 {
        return Err(bad(M, "merkle branch longer than 32 levels"));
    }
    let version = u32_param(M, params, 5, "version")?;
    Ok(Notify {
        job_id,
        prev_hash,
        coinb1: hex_param(M, params, 2, "coinb1")?,
        coinb2: hex_param(M, params, 3, "coinb2")?,
        branch,
        version: i32::from_ne_bytes(version.to_ne_bytes()),
        bits: u32_param(M, params, 6, "nbits")?,
        time: u32_param(M, params, 7, "ntime")?,
        clean: params[8]
            .as_bool()
            .ok_or_else(|| bad(M, "clean_jobs is not a boolean"))?,
    })
}

fn parse_error(error: &Value) -> Option<(i64, String)> {
    match error {
        Value::Null => None,
        Value::Array(items) => Some((
            items.first().and_then(Value::as_i64).unwrap_or(-1),
            items
                .get(1)
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
        )),
        Value::Object(map) => Some((
            map.get("code").and_then(Value::as_i64).unwrap_or(-1),
            map.get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_owned(),
        )),
        Value::String(text) => Some((-1, text.clone())),
        other => Some((-1, other.to_string())),
    }
}

/// Parses one line from the pool.
///
/// # Errors
/// Invalid JSON, wrong field types, or a message that is neither a response nor a notification.
pub fn parse_line(line: &str) -> Result<Message, MessageError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| MessageError::NotJson(e.to_string()))?;
    if let Some(method) = value.get("method").and_then(Value::as_str) {
        let empty = Vec::new();
        let params = value
            .get("params")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        return match method {
            "mining.notify" => parse_notify(params).map(Message::Notify),
            "mining.set_difficulty" => {
                let difficulty = params
                    .first()
                    .and_then(Value::as_f64)
                    .ok_or_else(|| bad(method, "difficulty is not a number"))?;
                check_difficulty(difficulty)?;
                Ok(Message::SetDifficulty(difficulty))
            }
            "mining.set_extranonce" => {
                let extranonce1 = hex_param(method, params, 0, "extranonce1")?;
                let size = params
                    .get(1)
                    .and_then(Value::as_u64)
                    .filter(|&n| (1..=16).contains(&n))
                    .ok_or_else(|| bad(method, "extranonce2 size must be 1 to 16"))?;
                Ok(Message::SetExtranonce {
                    extranonce1,
                    extranonce2_size: usize::try_from(size).expect("at most 16"),
                })
            }
            "client.reconnect" => Ok(Message::Reconnect {
                wait_seconds: params.get(2).and_then(Value::as_u64).unwrap_or(0).min(600),
            }),
            "mining.set_version_mask" => {
                let mask = u32_param(method, params, 0, "mask")?;
                Ok(Message::SetVersionMask(mask))
            }
            other => Ok(Message::Other(other.to_owned())),
        };
    }
    match value.get("id").and_then(Value::as_u64) {
        Some(id) => Ok(Message::Response {
            id,
            result: value.get("result").cloned().unwrap_or(Value::Null),
            error: value.get("error").and_then(parse_error),
        }),
        None => Err(MessageError::Unrecognized(line.chars().take(80).collect())),
    }
}

fn check_difficulty(difficulty: f64) -> Result<(), MessageError> {
    if difficulty.is_finite() && difficulty > 0.0 {
        Ok(())
    } else {
        Err(MessageError::BadDifficulty(difficulty.to_string()))
    }
}

/// `(extranonce1, extranonce2_size)` from a `mining.subscribe` result.
///
/// # Errors
/// A result of the wrong shape.
pub fn parse_subscribe(result: &Value) -> Result<(Vec<u8>, usize), MessageError> {
    const M: &str = "mining.subscribe";
    let items = result
        .as_array()
        .ok_or_else(|| bad(M, "result is not a list"))?;
    let extranonce1 = hex_param(M, items, 1, "extranonce1")?;
    let size = items
        .get(2)
        .and_then(Value::as_u64)
        .filter(|&n| (1..=16).contains(&n))
        .ok_or_else(|| bad(M, "extranonce2 size must be 1 to 16"))?;
    Ok((extranonce1, usize::try_from(size).expect("at most 16")))
}

/// The share target for a pool difficulty: diff1 / difficulty, where diff1 is
/// `0x00000000ffff0000...` (the truncated difficulty-1 target pools use).
///
/// # Errors
/// A difficulty that is zero, negative, infinite or not a number.
pub fn share_target(difficulty: f64) -> Result<Target, MessageError> {
    check_difficulty(difficulty)?;
    // target = 0xffff / difficulty * 2^208, computed from the float's exact mantissa and exponent.
    let quotient = 65535.0 / difficulty;
    if quotient >= 2f64.powi(48) {
        return Ok(Target::from_be_bytes([0xff; 32]));
    }
    let bits = quotient.to_bits();
    let exponent = i32::try_from((bits >> 52) & 0x7ff).expect("11 bits");
    if exponent == 0 {
        // Subnormal: far below 2^-1000, so the target is zero; the smallest non-zero is used.
        return Ok(Target::from_be_bytes({
            let mut b = [0u8; 32];
            b[31] = 1;
            b
        }));
    }
    let mantissa = (bits & ((1 << 52) - 1)) | (1 << 52);
    // value = mantissa * 2^(exponent - 1075) * 2^208
    let shift = exponent - 1075 + 208;
    let mut le = [0u8; 32];
    let mut put = |value: u128, shift: i32| {
        for byte in 0..32i32 {
            let bit = byte * 8 - shift;
            let part = if bit >= 0 {
                if bit >= 128 {
                    0
                } else {
                    value >> bit
                }
            } else if -bit >= 128 {
                0
            } else {
                value << (-bit)
            };
            le[usize::try_from(byte).expect("small")] |= u8::try_from(part & 0xff).expect("masked");
        }
    };
    put(u128::from(mantissa), shift);
    let target = Target::from_le_bytes(le);
    Ok(if target == Target::ZERO {
        Target::from_le_bytes({
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        })
    } else {
        target
    })
}

/// One request line (with its newline).
#[must_use]
pub fn request(id: u64, method: &str, params: &Value) -> String {
    let mut line = json!({"id": id, "method": method, "params": params}).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["1","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008","072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",[],"00000002","1c2ac4af","504e86b9",false]}"#;

    #[test]
    fn notify_decodes_into_header_byte_order() {
        let Message::Notify(n) = parse_line(NOTIFY).expect("parses") else {
            panic!("not a notify");
        };
        assert_eq!(n.job_id, "1");
        assert_eq!(n.version, 2);
        assert_eq!(n.bits, 0x1c2a_c4af);
        assert_eq!(n.time, 0x504e_86b9);
        assert!(!n.clean);
        // Word-swapped back: the last internal-order bytes are the hash's leading zeros.
        assert_eq!(&n.prev_hash[..4], &[0xf8, 0xb6, 0x16, 0x4d]);
        assert_eq!(&n.prev_hash[28..], &[0, 0, 0, 0]);
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for line in [
            "",
            "{",
            "[]",
            "null",
            "42",
            r#"{"id":"x"}"#,
            r#"{"method":"mining.notify","params":"nope"}"#,
            r#"{"method":"mining.notify","params":[1,2,3,4,5,6,7,8,9]}"#,
            r#"{"method":"mining.notify","params":["1","00","","",[],"00000002","1c2ac4af","504e86b9",true]}"#,
            r#"{"method":"mining.notify","params":["1","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","","",["zz"],"00000002","1c2ac4af","504e86b9",true]}"#,
            r#"{"method":"mining.notify","params":["1","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","","",[],"002","1c2ac4af","504e86b9",true]}"#,
            r#"{"method":"mining.notify","params":["1","4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000","","",[],"00000002","1c2ac4af","504e86b9","yes"]}"#,
            r#"{"method":"mining.set_difficulty","params":[0]}"#,
            r#"{"method":"mining.set_difficulty","params":[-1]}"#,
            r#"{"method":"mining.set_difficulty","params":["big"]}"#,
            r#"{"method":"mining.set_extranonce","params":["zz",4]}"#,
            r#"{"method":"mining.set_extranonce","params":["00",99]}"#,
        ] {
            assert!(parse_line(line).is_err(), "{line}");
        }
    }

    #[test]
    fn responses_carry_two_or_three_element_errors() {
        let r = parse_line(r#"{"id":4,"result":null,"error":[21,"job not found"]}"#).expect("ok");
        assert_eq!(
            r,
            Message::Response {
                id: 4,
                result: Value::Null,
                error: Some((21, "job not found".into()))
            }
        );
        let r = parse_line(r#"{"id":5,"result":null,"error":[24,"unauthorized worker",null]}"#)
            .expect("ok");
        assert!(matches!(
            r,
            Message::Response {
                error: Some((24, _)),
                ..
            }
        ));
        let r = parse_line(r#"{"id":6,"result":true,"error":null}"#).expect("ok");
        assert!(matches!(r, Message::Response { error: None, .. }));
    }

    #[test]
    fn subscribe_result_gives_extranonce1_and_size() {
        let result = json!([
            [
                ["mining.set_difficulty", "deadbeefcafebabe0100000000000000"],
                ["mining.notify", "x"]
            ],
            "08000002",
            4
        ]);
        assert_eq!(parse_subscribe(&result).expect("ok"), (vec![8, 0, 0, 2], 4));
        assert!(parse_subscribe(&json!([[], "08000002"])).is_err());
        assert!(parse_subscribe(&json!("x")).is_err());
    }

    #[test]
    fn share_target_is_diff1_over_difficulty() {
        let diff1 = {
            let mut be = [0u8; 32];
            be[4] = 0xff;
            be[5] = 0xff;
            Target::from_be_bytes(be)
        };
        assert_eq!(share_target(1.0).expect("ok"), diff1);
        let half = share_target(2.0).expect("ok");
        let mut be = [0u8; 32];
        be[4] = 0x7f;
        be[5] = 0xff;
        be[6] = 0x80;
        assert_eq!(half, Target::from_be_bytes(be));
        // 0.0001: 0xffff * 10^4 * 2^208 = 0x270f_d8f0 * 2^208 (655350000).
        let easy = share_target(0.0001).expect("ok").to_be_bytes();
        assert_eq!(&easy[..6], &[0, 0, 0x27, 0x0f, 0xd8, 0xf0]);
        assert!(share_target(0.0).is_err());
        assert!(share_target(f64::NAN).is_err());
        assert!(share_target(f64::INFINITY).is_err());
        assert_eq!(
            share_target(1e-30).expect("ok"),
            Target::from_be_bytes([0xff; 32])
        );
    }
}
