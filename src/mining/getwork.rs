//! getwork (with long polling): the node hands out finished headers as byte-swapped SHA-256
//! message words and a little-endian target; solutions go back in the same layout.

use std::sync::Arc;

use bitcoin::Target;
use serde_json::{json, Value};

use super::job::{Job, JobExtra, JobWork, Solution};
use super::longpoll::LongPollParams;
use super::node::{BlockRejection, SoloProtocol, SubmitOutcome, WorkError};
use super::rpc::RpcClient;

/// getwork's `data` is 128 bytes: the header and its SHA-256 padding.
const DATA_LEN: usize = 128;

/// One getwork answer, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetworkData {
    /// The header in wire byte order.
    pub header: [u8; 80],
    /// The 48 bytes after the header, returned unchanged on submit.
    pub padding: Vec<u8>,
    pub target: Target,
    pub height: Option<u64>,
}

/// Byte-swaps every 4-byte word: getwork's layout is the header as big-endian message words.
fn swap32(bytes: &mut [u8]) {
    for word in bytes.chunks_exact_mut(4) {
        word.reverse();
    }
}

/// Decodes a getwork answer `{data, target, height}`.
///
/// # Errors
/// Missing fields, non-hex text or wrong lengths.
pub fn decode(result: &Value) -> Result<GetworkData, WorkError> {
    let bad = |field, problem: String| WorkError::bad("getwork", field, problem);
    let field = |name: &'static str| {
        result
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(name, "is missing or not a string".into()))
    };
    let mut data =
        hex::decode(field("data")?).map_err(|e| bad("data", format!("is not hex: {e}")))?;
    if data.len() != DATA_LEN {
        return Err(bad(
            "data",
            format!("must be {DATA_LEN} bytes, got {}", data.len()),
        ));
    }
    swap32(&mut data[..80]);
    let header: [u8; 80] = data[..80].try_into().expect("checked length");
    let target: [u8; 32] = hex::decode(field("target")?)
        .map_err(|e| bad("target", format!("is not hex: {e}")))?
        .try_into()
        .map_err(|_| bad("target", "must be 32 bytes".into()))?;
    let target = Target::from_le_bytes(target);
    if target == Target::ZERO {
        return Err(bad("target", "is zero".into()));
    }
    Ok(GetworkData {
        header,
        padding: data[80..].to_vec(),
        target,
        height: result.get("height").and_then(Value::as_u64),
    })
}

/// The hex string to submit for a solved header.
#[must_use]
pub fn encode_submit(header: &[u8; 80], padding: &[u8]) -> String {
    let mut data = header.to_vec();
    swap32(&mut data);
    data.extend_from_slice(padding);
    hex::encode(data)
}

/// The getwork protocol for [`super::node::NodeSource`].
#[derive(Debug, Default)]
pub struct Getwork {
    jobs: u64,
}

impl Getwork {
    fn job(&mut self, result: &Value) -> Result<Arc<Job>, WorkError> {
        let work = decode(result)?;
        self.jobs += 1;
        Ok(Arc::new(Job {
            id: format!("getwork-{}", self.jobs),
            work: JobWork::Header(work.header),
            target: work.target,
            solo: true,
            height: work.height,
            extra: JobExtra::GetworkPadding(work.padding),
        }))
    }
}

impl SoloProtocol for Getwork {
    fn fetch(&mut self, client: &RpcClient) -> Result<(Arc<Job>, Option<String>), WorkError> {
        let reply = client.call("getwork", json!([]), super::node::CALL_TIMEOUT)?;
        Ok((self.job(&reply.result)?, reply.long_polling))
    }

    fn longpoll_method(&self) -> &'static str {
        "getwork"
    }

    fn longpoll_params(&self) -> LongPollParams {
        Box::new(|_| json!([]))
    }

    fn job_from_longpoll(&mut self, result: &Value) -> Result<Arc<Job>, WorkError> {
        self.job(result)
    }

    fn submit(
        &mut self,
        client: &RpcClient,
        solution: &Solution,
    ) -> Result<SubmitOutcome, WorkError> {
        let JobExtra::GetworkPadding(padding) = &solution.job.extra else {
            return Err(WorkError::WrongSolution {
                protocol: "getwork",
                what: "the getwork data it was found in",
            });
        };
        let data = encode_submit(solution.header.bytes(), padding);
        let reply = client.call("getwork", json!([data]), super::node::CALL_TIMEOUT)?;
        Ok(match reply.result.as_bool() {
            Some(true) => SubmitOutcome::Accepted,
            Some(false) => SubmitOutcome::Rejected {
                reason: "the node answered false (stale, duplicate or bad proof of work)".into(),
                kind: BlockRejection::Other,
            },
            None => SubmitOutcome::Rejected {
                reason: format!("unexpected answer {}", reply.result),
                kind: BlockRejection::Other,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The genesis block header in wire order.
    const GENESIS: &str = "0100000000000000000000000000000000000000000000000000000000000000\
                           000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa\
                           4b1e5e4a29ab5f49ffff001d1dac2b7c";

    /// getwork's layout of a header: swapped words, then SHA-256 padding for 80 bytes.
    fn getwork_data(header: &str) -> String {
        let mut data = hex::decode(header).expect("hex");
        swap32(&mut data);
        data.push(0x80);
        data.resize(124, 0);
        data.extend_from_slice(&640u32.to_be_bytes());
        hex::encode(data)
    }

    #[test]
    fn decode_swaps_words_and_reads_the_target_little_endian() {
        let data = getwork_data(GENESIS);
        // Version 1 is the word 00000001 once swapped; nBits 1d00ffff reads as is.
        assert!(data.starts_with("00000001"));
        assert_eq!(&data[144..152], "1d00ffff");
        let answer = json!({
            "data": data,
            "target": "0000000000000000000000000000000000000000000000000000000000ffff7f",
            "height": 7,
        });
        let work = decode(&answer).expect("decodes");
        assert_eq!(hex::encode(work.header), GENESIS);
        let mut be = [0u8; 32];
        be[..3].copy_from_slice(&[0x7f, 0xff, 0xff]);
        assert_eq!(work.target, Target::from_be_bytes(be));
        assert_eq!(work.height, Some(7));
        assert_eq!(encode_submit(&work.header, &work.padding), data);
    }

    #[test]
    fn decode_refuses_bad_answers() {
        let target = "0000000000000000000000000000000000000000000000000000000000ffff7f";
        for answer in [
            json!({}),
            json!({"data": 5, "target": target}),
            json!({"data": "zz", "target": target}),
            json!({"data": "00", "target": target}),
            json!({"data": getwork_data(GENESIS), "target": "00"}),
            json!({"data": getwork_data(GENESIS), "target": "00".repeat(32)}),
        ] {
            assert!(decode(&answer).is_err(), "{answer}");
        }
    }
}
