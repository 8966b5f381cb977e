//! getblocktemplate / submitblock (BIP 22/23): the miner builds the coinbase (BIP 34 height,
//! extranonce, payout, witness commitment), the merkle branch and, once solved, the block.

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::absolute::LockTime;
use bitcoin::address::NetworkUnchecked;
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash as _;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, Block, BlockHash, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Txid, Witness,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::job::{coinbase_branch, CoinbaseWork, Job, JobExtra, JobWork, Solution};
use super::longpoll::LongPollParams;
use super::node::{BlockRejection, SoloProtocol, SubmitOutcome, WorkError, CALL_TIMEOUT};
use super::rpc::RpcClient;
use super::target;

/// Bytes of extranonce in the coinbase scriptSig: rolled when a header's nonces run out.
const EXTRANONCE_SIZE: usize = 8;

/// The fields of a block template the miner uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub version: i32,
    /// Previous block hash in internal byte order.
    pub prev_hash: [u8; 32],
    pub time: u32,
    pub bits: u32,
    pub height: u64,
    pub coinbase_value: u64,
    /// `(txid in internal order, raw transaction)` for every non-coinbase transaction.
    pub transactions: Vec<([u8; 32], Vec<u8>)>,
    pub witness_commitment: Option<ScriptBuf>,
    pub segwit: bool,
    pub longpoll_id: Option<String>,
}

/// A `getblocktemplate` answer as the node writes it (BIP 22/23); unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct RawTemplate {
    version: i32,
    previousblockhash: String,
    bits: String,
    curtime: u32,
    height: u64,
    coinbasevalue: u64,
    transactions: Vec<RawTransaction>,
    default_witness_commitment: Option<String>,
    #[serde(default)]
    rules: Vec<String>,
    longpollid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawTransaction {
    data: String,
    /// Older nodes only give `hash` (the txid before segwit).
    #[serde(alias = "hash")]
    txid: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> WorkError {
    WorkError::bad("getblocktemplate", field, problem)
}

impl Template {
    /// Reads a `getblocktemplate` answer.
    ///
    /// # Errors
    /// Missing or malformed fields.
    pub fn parse(value: &Value) -> Result<Self, WorkError> {
        let raw = RawTemplate::deserialize(value).map_err(|e| bad("template", e.to_string()))?;
        let prev = BlockHash::from_str(&raw.previousblockhash)
            .map_err(|e| bad("previousblockhash", e.to_string()))?;
        let bits = u32::from_str_radix(&raw.bits, 16)
            .ok()
            .filter(|_| raw.bits.len() == 8)
            .ok_or_else(|| bad("bits", format!("{:?} is not 8 hex digits", raw.bits)))?;
        target::from_bits(bits).map_err(|e| bad("bits", e.to_string()))?;
        let transactions = raw
            .transactions
            .iter()
            .map(|tx| {
                let data =
                    hex::decode(&tx.data).map_err(|e| bad("transactions.data", e.to_string()))?;
                let txid = Txid::from_str(&tx.txid)
                    .map_err(|e| bad("transactions.txid", format!("{}: {e}", tx.txid)))?;
                Ok((txid.to_byte_array(), data))
            })
            .collect::<Result<Vec<_>, WorkError>>()?;
        let witness_commitment = raw
            .default_witness_commitment
            .map(|text| {
                hex::decode(text)
                    .map(ScriptBuf::from_bytes)
                    .map_err(|e| bad("default_witness_commitment", e.to_string()))
            })
            .transpose()?;
        let segwit = raw
            .rules
            .iter()
            .any(|rule| rule.trim_start_matches('!') == "segwit");
        Ok(Self {
            version: raw.version,
            prev_hash: prev.to_byte_array(),
            time: raw.curtime,
            bits,
            height: raw.height,
            coinbase_value: raw.coinbasevalue,
            transactions,
            witness_commitment,
            segwit,
            longpoll_id: raw.longpollid,
        })
    }

    /// The coinbase with extranonce `extranonce` (no witness).
    ///
    /// # Errors
    /// A height or value that does not fit.
    pub fn coinbase(
        &self,
        payout: &ScriptBuf,
        extranonce: [u8; EXTRANONCE_SIZE],
    ) -> Result<Transaction, WorkError> {
        let height = i64::try_from(self.height).map_err(|_| bad("height", "is too large"))?;
        let script_sig = Builder::new()
            .push_int(height)
            .push_slice(PushBytesBuf::from(extranonce))
            .into_script();
        let mut output = vec![TxOut {
            value: Amount::from_sat(self.coinbase_value),
            script_pubkey: payout.clone(),
        }];
        if let Some(commitment) = &self.witness_commitment {
            output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment.clone(),
            });
        }
        Ok(Transaction {
            version: Version::ONE,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output,
        })
    }

    /// The template as a job: the coinbase split around its extranonce, and the branch.
    ///
    /// # Errors
    /// A height or value that does not fit.
    pub fn job(&self, id: String, payout: &ScriptBuf) -> Result<Job, WorkError> {
        let coinbase = encode::serialize(&self.coinbase(payout, [0; EXTRANONCE_SIZE])?);
        let script_len = usize::from(coinbase[41]);
        // version, input count, outpoint, script length, then the script ending in the extranonce.
        let split = 4 + 1 + 36 + 1 + script_len - EXTRANONCE_SIZE;
        debug_assert_eq!(
            &coinbase[split..split + EXTRANONCE_SIZE],
            &[0; EXTRANONCE_SIZE]
        );
        let txids: Vec<[u8; 32]> = self.transactions.iter().map(|(id, _)| *id).collect();
        Ok(Job {
            id,
            work: JobWork::Coinbase(CoinbaseWork {
                version: self.version,
                prev_hash: self.prev_hash,
                time: self.time,
                bits: self.bits,
                coinb1: coinbase[..split].to_vec(),
                extranonce1: Vec::new(),
                extranonce2_size: EXTRANONCE_SIZE,
                coinb2: coinbase[split + EXTRANONCE_SIZE..].to_vec(),
                branch: coinbase_branch(&txids),
                // The node sets the version (deployment signalling): never rolled solo.
                version_mask: 0,
            }),
            target: target::from_bits(self.bits).map_err(|e| bad("bits", e.to_string()))?,
            solo: true,
            height: Some(self.height),
            extra: JobExtra::Template {
                transactions: self
                    .transactions
                    .iter()
                    .map(|(_, raw)| raw.clone())
                    .collect(),
                segwit: self.segwit,
            },
        })
    }
}

/// The full block for a solution of a template job, checked before it leaves.
///
/// # Errors
/// A solution that is not for a template job, or a block whose merkle root or witness
/// commitment does not check out.
pub fn assemble_block(solution: &Solution) -> Result<Block, WorkError> {
    let (
        JobWork::Coinbase(work),
        JobExtra::Template {
            transactions,
            segwit,
        },
    ) = (&solution.job.work, &solution.job.extra)
    else {
        return Err(WorkError::WrongSolution {
            protocol: "getblocktemplate",
            what: "a block template job",
        });
    };
    let mut coinbase: Transaction =
        encode::deserialize(&work.coinbase(solution.roll)).map_err(|e| WorkError::BadBlock {
            problem: format!("has a coinbase that does not decode: {e}"),
        })?;
    if *segwit {
        // BIP 141: the witness reserved value, all zeros, that the commitment was made with.
        coinbase.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
    }
    let mut txdata = vec![coinbase];
    for raw in transactions {
        txdata.push(encode::deserialize(raw).map_err(|e| bad("transactions.data", e.to_string()))?);
    }
    let block = Block {
        header: *solution.header.fields(),
        txdata,
    };
    if !block.check_merkle_root() {
        return Err(WorkError::BadBlock {
            problem: "has a wrong merkle root".into(),
        });
    }
    if *segwit && !block.check_witness_commitment() {
        return Err(WorkError::BadBlock {
            problem: "has a wrong witness commitment".into(),
        });
    }
    Ok(block)
}

/// The getblocktemplate protocol for [`super::node::NodeSource`].
#[derive(Debug)]
pub struct Gbt {
    payout: ScriptBuf,
    jobs: u64,
    longpoll_id: Option<String>,
}

impl Gbt {
    /// Resolves `address` to a scriptPubKey through the node's `validateaddress`, so every
    /// address the node knows works; addresses the `bitcoin` crate knows are also checked
    /// against the node's network here.
    ///
    /// # Errors
    /// An address the node refuses, one for another network, or a failed call.
    pub fn new(client: &RpcClient, address: &str) -> Result<Self, WorkError> {
        if let Ok(parsed) = address.parse::<Address<NetworkUnchecked>>() {
            let info = client.call("getblockchaininfo", json!([]), CALL_TIMEOUT)?;
            let chain = info
                .result
                .get("chain")
                .and_then(Value::as_str)
                .unwrap_or("");
            let network = match chain {
                "main" => Some(Network::Bitcoin),
                "test" | "testnet" => Some(Network::Testnet),
                "signet" => Some(Network::Signet),
                "regtest" => Some(Network::Regtest),
                _ => None,
            };
            if let Some(network) = network {
                if !parsed.is_valid_for_network(network) {
                    return Err(WorkError::AddressWrongNetwork {
                        address: address.to_owned(),
                        chain: chain.to_owned(),
                    });
                }
            }
        }
        let reply = client.call("validateaddress", json!([address]), CALL_TIMEOUT)?;
        if reply.result.get("isvalid").and_then(Value::as_bool) != Some(true) {
            return Err(WorkError::AddressRefused {
                address: address.to_owned(),
            });
        }
        let script = reply
            .result
            .get("scriptPubKey")
            .and_then(Value::as_str)
            .and_then(|text| hex::decode(text).ok())
            .ok_or_else(|| {
                WorkError::bad("validateaddress", "scriptPubKey", "is missing or not hex")
            })?;
        Ok(Self {
            payout: ScriptBuf::from_bytes(script),
            jobs: 0,
            longpoll_id: None,
        })
    }

    fn job(&mut self, result: &Value) -> Result<Arc<Job>, WorkError> {
        let template = Template::parse(result)?;
        self.longpoll_id.clone_from(&template.longpoll_id);
        self.jobs += 1;
        Ok(Arc::new(
            template.job(format!("gbt-{}", self.jobs), &self.payout)?,
        ))
    }
}

fn request(longpoll_id: Option<&str>) -> Value {
    match longpoll_id {
        Some(id) => json!([{"rules": ["segwit"], "longpollid": id}]),
        None => json!([{"rules": ["segwit"]}]),
    }
}

impl SoloProtocol for Gbt {
    fn fetch(&mut self, client: &RpcClient) -> Result<(Arc<Job>, Option<String>), WorkError> {
        let reply = client.call("getblocktemplate", request(None), CALL_TIMEOUT)?;
        let job = self.job(&reply.result)?;
        // BIP 22 long polling goes to the same URL with a longpollid.
        let longpoll = self.longpoll_id.as_ref().map(|_| client_path(client));
        Ok((job, longpoll))
    }

    fn longpoll_method(&self) -> &'static str {
        "getblocktemplate"
    }

    fn longpoll_params(&self) -> LongPollParams {
        let first = self.longpoll_id.clone();
        Box::new(move |last| {
            let id = last
                .and_then(|v| v.get("longpollid"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| first.clone());
            request(id.as_deref())
        })
    }

    fn job_from_longpoll(&mut self, result: &Value) -> Result<Arc<Job>, WorkError> {
        self.job(result)
    }

    fn submit(
        &mut self,
        client: &RpcClient,
        solution: &Solution,
    ) -> Result<SubmitOutcome, WorkError> {
        let block = assemble_block(solution)?;
        let hex = hex::encode(encode::serialize(&block));
        let reply = client.call("submitblock", json!([hex]), CALL_TIMEOUT)?;
        Ok(match reply.result {
            Value::Null => SubmitOutcome::Accepted,
            Value::String(reason) => SubmitOutcome::Rejected {
                kind: BlockRejection::from_bip22(&reason),
                reason,
            },
            other => SubmitOutcome::Rejected {
                reason: format!("unexpected answer {other}"),
                kind: BlockRejection::Other,
            },
        })
    }
}

fn client_path(client: &RpcClient) -> String {
    client.path().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_json(segwit: bool, txs: usize) -> Value {
        let transactions: Vec<Value> = (0..txs)
            .map(|i| {
                let tx = Transaction {
                    version: Version::TWO,
                    lock_time: LockTime::ZERO,
                    input: vec![TxIn {
                        previous_output: OutPoint::new(
                            Txid::all_zeros(),
                            u32::try_from(i).expect("small"),
                        ),
                        script_sig: ScriptBuf::new(),
                        sequence: Sequence::MAX,
                        witness: Witness::new(),
                    }],
                    output: vec![TxOut {
                        value: Amount::from_sat(1000),
                        script_pubkey: ScriptBuf::new(),
                    }],
                };
                json!({
                    "data": hex::encode(encode::serialize(&tx)),
                    "txid": tx.compute_txid().to_string(),
                })
            })
            .collect();
        json!({
            "version": 536_870_912,
            "previousblockhash": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            "bits": "207fffff",
            "curtime": 1_700_000_000,
            "height": 500,
            "coinbasevalue": 5_000_000_000u64,
            "transactions": transactions,
            "rules": if segwit { json!(["csv", "!segwit"]) } else { json!([]) },
            "default_witness_commitment": "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9",
            "longpollid": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e220600000000",
        })
    }

    #[test]
    fn coinbase_starts_with_the_bip34_height_and_ends_in_the_extranonce() {
        let template = Template::parse(&template_json(false, 0)).expect("parses");
        let payout = ScriptBuf::from_bytes(vec![0x51]);
        let tx = template.coinbase(&payout, [7; 8]).expect("builds");
        // 500 = 0x01f4: a 2-byte little-endian push, then the 8-byte extranonce push.
        assert_eq!(
            tx.input[0].script_sig.as_bytes(),
            &[0x02, 0xf4, 0x01, 0x08, 7, 7, 7, 7, 7, 7, 7, 7]
        );
        assert_eq!(tx.output[0].value, Amount::from_sat(5_000_000_000));
        assert_eq!(
            tx.output[1].script_pubkey.as_bytes()[..6],
            [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed]
        );
        assert_eq!(
            template.prev_hash[31], 0x0f,
            "display hex is reversed into internal order"
        );
    }

    #[test]
    fn a_solved_job_assembles_into_a_block_with_the_right_merkle_root() {
        for (segwit, txs) in [(false, 0), (false, 3), (true, 0)] {
            let template = Template::parse(&template_json(segwit, txs)).expect("parses");
            let job = Arc::new(
                template
                    .job("t".into(), &ScriptBuf::from_bytes(vec![0x51]))
                    .expect("job"),
            );
            let header = job.header(5).expect("in roll space");
            let solution = Solution::new(Arc::clone(&job), 5, header, 42);
            // The commitment in the fixture is for a block with no other transactions.
            let block = assemble_block(&solution).expect("assembles");
            assert_eq!(block.txdata.len(), txs + 1);
            assert_eq!(block.header.nonce, 42);
            assert_eq!(block.txdata[0].input[0].witness.len(), usize::from(segwit));
        }
    }

    #[test]
    fn malformed_templates_are_errors() {
        let good = template_json(false, 0);
        for (field, value) in [
            ("bits", json!("zz")),
            ("bits", json!("2100ffff00")),
            ("previousblockhash", json!(5)),
            ("transactions", json!("none")),
            ("height", json!(-1)),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(Template::parse(&bad).is_err(), "{field}");
        }
    }
}
