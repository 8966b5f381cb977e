//! sv2-tp-bridge: a Stratum V2 Template Provider for the test harness only.
//!
//! pool_sv2 needs a Template Provider (the template-distribution protocol over Noise) and none
//! is packaged, so this bridge plays one: it answers the pool's SetupConnection, and after
//! CoinbaseOutputConstraints sends NewTemplate(future) + SetNewPrevHash built from the real
//! bcoin regtest node's `getblocktemplate`, polled every 500 ms (a fresh pair on a new tip).
//! On SubmitSolution it assembles the block and `submitblock`s it, printing one JSON line:
//! `{"event":"submitblock","hash":"..","result":null}` (null = accepted).
//!
//! Usage: sv2-tp-bridge LISTEN_ADDR RPC_URL API_KEY [NOISE_PUBLIC_KEY NOISE_SECRET_KEY]
//!
//! The Noise key pair defaults to SRI's example authority pair. The pool's
//! `[template_provider_type.Sv2Tp]` is configured without `public_key`, which makes it skip the
//! TP authority check (`Initiator::without_pk`): acceptable for a loopback test harness, not
//! for anything else.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use bitcoin::block::{Header, Version};
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{Block, BlockHash, CompactTarget, Transaction, TxMerkleNode, TxOut};
use serde_json::{json, Value};
use stratum_apps::key_utils::{Secp256k1PublicKey, Secp256k1SecretKey};
use stratum_apps::network_helpers::accept_noise_connection;
use stratum_apps::network_helpers::noise_stream::{NoiseTcpReadHalf, NoiseTcpWriteHalf};
use stratum_apps::stratum_core::binary_sv2::{Seq0255, B0255, B064K, U256};
use stratum_apps::stratum_core::common_messages_sv2::SetupConnectionSuccess;
use stratum_apps::stratum_core::parsers_sv2::{AnyMessage, CommonMessages, TemplateDistribution};
use stratum_apps::stratum_core::template_distribution_sv2::{
    NewTemplate, SetNewPrevHash, SubmitSolution,
};
use stratum_apps::utils::types::OutboundFrame;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The SRI crates' errors implement Debug only.
fn sv2<E: std::fmt::Debug>(e: E) -> BoxError {
    format!("{e:?}").into()
}

const EXAMPLE_PUBLIC_KEY: &str = "9auqWEzQDVyd2oe1JVGFLMLHZtCo2FFqZwtKA5gd9xbuEu7PH72";
const EXAMPLE_SECRET_KEY: &str = "mkDLTBBRxdBv998612qipDYoTK3YUrqLe8uWw7gu3iXbSrn2n";
const POLL: Duration = Duration::from_millis(500);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// How many past templates a SubmitSolution may still refer to.
const KEEP_TEMPLATES: usize = 32;

const MSG_SETUP_CONNECTION: u8 = 0x00;
const MSG_COINBASE_OUTPUT_CONSTRAINTS: u8 = 0x70;
const MSG_SUBMIT_SOLUTION: u8 = 0x76;

#[derive(Clone)]
struct Rpc {
    addr: SocketAddr,
    host: String,
    path: String,
    auth: String,
}

impl Rpc {
    fn new(url: &str, api_key: &str) -> Result<Self, BoxError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("the RPC URL must start with http://")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()?
            .next()
            .ok_or("the RPC host resolves to nothing")?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("x:{api_key}"));
        Ok(Self {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            auth,
        })
    }

    /// One JSON-RPC call over HTTP/1.0, every step under RPC_TIMEOUT.
    fn call(&self, method: &str, params: Value) -> Result<Value, BoxError> {
        let body =
            json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
        let mut stream = StdTcpStream::connect_timeout(&self.addr, RPC_TIMEOUT)?;
        stream.set_read_timeout(Some(RPC_TIMEOUT))?;
        stream.set_write_timeout(Some(RPC_TIMEOUT))?;
        let request = format!(
            "POST {} HTTP/1.0\r\nHost: {}\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.path,
            self.host,
            self.auth,
            body.len(),
            body
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        // Bounded: 64 MiB is far above any regtest template.
        stream.take(64 << 20).read_to_end(&mut response)?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no HTTP header end in the RPC response")?;
        let reply: Value = serde_json::from_slice(&response[split + 4..])?;
        match reply.get("error") {
            Some(e) if !e.is_null() => Err(format!("{method}: {e}").into()),
            _ => Ok(reply.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}

/// One getblocktemplate turned into what the pool needs, kept for SubmitSolution.
struct Template {
    id: u64,
    prev_hash: BlockHash,
    bits: u32,
    target_le: [u8; 32],
    curtime: u32,
    version: u32,
    height: u64,
    coinbase_value: u64,
    witness_commitment: Option<Vec<u8>>,
    txs: Vec<Transaction>,
}

fn hex_decode(s: &str) -> Result<Vec<u8>, BoxError> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.into()))
        .collect()
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, BoxError> {
    v.get(name)
        .ok_or_else(|| format!("getblocktemplate has no {name}").into())
}

fn u64_field(v: &Value, name: &str) -> Result<u64, BoxError> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| format!("getblocktemplate {name} is not a number").into())
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str, BoxError> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| format!("getblocktemplate {name} is not a string").into())
}

impl Template {
    fn from_gbt(id: u64, gbt: &Value) -> Result<Self, BoxError> {
        let prev_hash = BlockHash::from_str(str_field(gbt, "previousblockhash")?)?;
        let bits = u32::from_str_radix(str_field(gbt, "bits")?, 16)?;
        let mut target_le: [u8; 32] = hex_decode(str_field(gbt, "target")?)?
            .try_into()
            .map_err(|_| "target is not 32 bytes")?;
        target_le.reverse();
        let mut txs = Vec::new();
        for tx in field(gbt, "transactions")?
            .as_array()
            .ok_or("transactions is not an array")?
        {
            txs.push(deserialize::<Transaction>(&hex_decode(str_field(
                tx, "data",
            )?)?)?);
        }
        let witness_commitment = match gbt.get("default_witness_commitment") {
            Some(Value::String(s)) => Some(hex_decode(s)?),
            _ => None,
        };
        Ok(Self {
            id,
            prev_hash,
            bits,
            target_le,
            curtime: u32::try_from(u64_field(gbt, "curtime")?)?,
            version: u32::try_from(u64_field(gbt, "version")?)?,
            height: u64_field(gbt, "height")?,
            coinbase_value: u64_field(gbt, "coinbasevalue")?,
            witness_commitment,
            txs,
        })
    }

    /// BIP34: the height as a minimal script push, first in the coinbase scriptSig.
    fn coinbase_prefix(&self) -> Vec<u8> {
        bitcoin::script::Builder::new()
            .push_int(self.height as i64)
            .into_script()
            .to_bytes()
    }

    fn coinbase_outputs(&self) -> (u32, Vec<u8>) {
        match &self.witness_commitment {
            Some(script) => {
                let out = TxOut {
                    value: bitcoin::Amount::ZERO,
                    script_pubkey: bitcoin::ScriptBuf::from_bytes(script.clone()),
                };
                (1, serialize(&out))
            }
            None => (0, Vec::new()),
        }
    }

    /// Sibling hashes of the coinbase (index 0), deepest first, internal byte order.
    fn merkle_path(&self) -> Vec<[u8; 32]> {
        let mut level: Vec<[u8; 32]> = std::iter::once([0u8; 32])
            .chain(self.txs.iter().map(|t| t.compute_txid().to_byte_array()))
            .collect();
        let mut path = Vec::new();
        while level.len() > 1 {
            path.push(level[1]);
            if level.len() % 2 == 1 {
                let last = level[level.len() - 1];
                level.push(last);
            }
            level = level
                .chunks(2)
                .map(|pair| {
                    let mut both = [0u8; 64];
                    both[..32].copy_from_slice(&pair[0]);
                    both[32..].copy_from_slice(&pair[1]);
                    sha256d::Hash::hash(&both).to_byte_array()
                })
                .collect();
        }
        path
    }

    fn block(&self, solution: &SubmitSolution) -> Result<Block, BoxError> {
        let coinbase: Transaction = deserialize(solution.coinbase_tx.as_bytes())?;
        let mut txdata = vec![coinbase];
        txdata.extend(self.txs.iter().cloned());
        let hashes = txdata.iter().map(|t| t.compute_txid().to_raw_hash());
        let merkle_root = bitcoin::merkle_tree::calculate_root(hashes)
            .map(TxMerkleNode::from_raw_hash)
            .ok_or("no transactions")?;
        let header = Header {
            version: Version::from_consensus(solution.version as i32),
            prev_blockhash: self.prev_hash,
            merkle_root,
            time: solution.header_timestamp,
            bits: CompactTarget::from_consensus(self.bits),
            nonce: solution.header_nonce,
        };
        Ok(Block { header, txdata })
    }
}

fn frame(message: AnyMessage<'_>) -> Result<OutboundFrame, BoxError> {
    OutboundFrame::from_message(message.into_owned()).map_err(sv2)
}

async fn send_template(writer: &mut NoiseTcpWriteHalf, t: &Template) -> Result<(), BoxError> {
    let prefix = t.coinbase_prefix();
    let (outputs_count, outputs) = t.coinbase_outputs();
    let path = t.merkle_path();
    let path_u256: Vec<U256> = path.iter().map(U256::from).collect();
    let new_template = NewTemplate {
        template_id: t.id,
        future_template: true,
        version: t.version,
        coinbase_tx_version: 2,
        coinbase_prefix: B0255::try_from(prefix.as_slice()).map_err(sv2)?,
        coinbase_tx_input_sequence: 0xffff_ffff,
        coinbase_tx_value_remaining: t.coinbase_value,
        coinbase_tx_outputs_count: outputs_count,
        coinbase_tx_outputs: B064K::try_from(outputs.as_slice()).map_err(sv2)?,
        coinbase_tx_locktime: 0,
        merkle_path: Seq0255::new(path_u256).map_err(sv2)?,
    };
    writer
        .write_frame(frame(AnyMessage::TemplateDistribution(
            TemplateDistribution::NewTemplate(new_template),
        ))?)
        .await
        .map_err(sv2)?;
    let prev = t.prev_hash.to_byte_array();
    let set_prev = SetNewPrevHash {
        template_id: t.id,
        prev_hash: U256::from(&prev),
        header_timestamp: t.curtime,
        n_bits: t.bits,
        target: U256::from(&t.target_le),
    };
    writer
        .write_frame(frame(AnyMessage::TemplateDistribution(
            TemplateDistribution::SetNewPrevHash(set_prev),
        ))?)
        .await
        .map_err(sv2)?;
    println!(
        "{}",
        json!({"event": "template", "id": t.id, "height": t.height, "txs": t.txs.len(),
               "prev_hash": t.prev_hash.to_string()})
    );
    Ok(())
}

async fn get_template(rpc: &Rpc, id: u64) -> Result<Template, BoxError> {
    let rpc = rpc.clone();
    let gbt = tokio::task::spawn_blocking(move || {
        rpc.call("getblocktemplate", json!([{"rules": ["segwit"]}]))
    })
    .await??;
    Template::from_gbt(id, &gbt)
}

async fn submit(rpc: &Rpc, block: &Block) -> Result<Value, BoxError> {
    let rpc = rpc.clone();
    let hex = hex_encode(&serialize(block));
    tokio::task::spawn_blocking(move || rpc.call("submitblock", json!([hex]))).await?
}

async fn serve(
    mut reader: NoiseTcpReadHalf,
    mut writer: NoiseTcpWriteHalf,
    rpc: &Rpc,
    next_id: &mut u64,
) -> Result<(), BoxError> {
    let mut templates: VecDeque<Template> = VecDeque::new();
    let mut sending = false;
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            read = reader.read_frame() => {
                let mut f = read.map_err(sv2)?;
                let header = f.header();
                let msg_type = header.msg_type();
                match msg_type {
                    MSG_SETUP_CONNECTION => {
                        // Parse it to fail loudly on garbage; any version 2 request is fine.
                        let _ = CommonMessages::try_from((msg_type, f.payload())).map_err(sv2)?;
                        let ok = SetupConnectionSuccess { used_version: 2, flags: 0 };
                        writer
                            .write_frame(frame(AnyMessage::Common(
                                CommonMessages::SetupConnectionSuccess(ok),
                            ))?)
                            .await.map_err(sv2)?;
                    }
                    MSG_COINBASE_OUTPUT_CONSTRAINTS => {
                        sending = true;
                        let t = get_template(rpc, *next_id).await?;
                        *next_id += 1;
                        send_template(&mut writer, &t).await?;
                        templates.push_back(t);
                    }
                    MSG_SUBMIT_SOLUTION => {
                        let message = TemplateDistribution::try_from((msg_type, f.payload())).map_err(sv2)?;
                        let TemplateDistribution::SubmitSolution(solution) = message else {
                            return Err("SubmitSolution did not parse as one".into());
                        };
                        let Some(t) = templates.iter().find(|t| t.id == solution.template_id) else {
                            println!("{}", json!({"event": "submitblock", "error": "unknown template",
                                                  "template_id": solution.template_id}));
                            continue;
                        };
                        let block = t.block(&solution)?;
                        let hash = block.block_hash().to_string();
                        let line = match submit(rpc, &block).await {
                            Ok(result) => json!({"event": "submitblock", "hash": hash,
                                                 "height": t.height, "result": result}),
                            Err(e) => json!({"event": "submitblock", "hash": hash,
                                             "height": t.height, "error": e.to_string()}),
                        };
                        println!("{line}");
                    }
                    other => eprintln!("sv2-tp-bridge: ignoring message type {other:#04x}"),
                }
            }
            _ = poll.tick(), if sending => {
                let t = match get_template(rpc, *next_id).await {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("sv2-tp-bridge: getblocktemplate: {e}");
                        continue;
                    }
                };
                if templates.back().is_some_and(|last| last.prev_hash == t.prev_hash) {
                    continue;
                }
                *next_id += 1;
                send_template(&mut writer, &t).await?;
                templates.push_back(t);
                while templates.len() > KEEP_TEMPLATES {
                    templates.pop_front();
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 && args.len() != 5 {
        return Err(
            "usage: sv2-tp-bridge LISTEN_ADDR RPC_URL API_KEY [NOISE_PUBLIC_KEY NOISE_SECRET_KEY]"
                .into(),
        );
    }
    let rpc = Rpc::new(&args[1], &args[2])?;
    let (public, secret) = if args.len() == 5 {
        (args[3].as_str(), args[4].as_str())
    } else {
        (EXAMPLE_PUBLIC_KEY, EXAMPLE_SECRET_KEY)
    };
    let public = Secp256k1PublicKey::from_str(public).map_err(|e| format!("{e:?}"))?;
    let secret = Secp256k1SecretKey::from_str(secret).map_err(|e| format!("{e:?}"))?;
    let listener = TcpListener::bind(&args[0]).await?;
    println!(
        "{}",
        json!({"event": "listening", "address": listener.local_addr()?.to_string()})
    );
    let mut next_id = 1u64;
    // One pool at a time; a restarted pool simply connects again.
    loop {
        let (stream, peer) = listener.accept().await?;
        let noise = match accept_noise_connection(stream, public, secret, 3600).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("sv2-tp-bridge: Noise handshake with {peer} failed: {e:?}");
                continue;
            }
        };
        println!(
            "{}",
            json!({"event": "connected", "peer": peer.to_string()})
        );
        let (reader, writer) = noise.into_split();
        if let Err(e) = serve(reader, writer, &rpc, &mut next_id).await {
            println!(
                "{}",
                json!({"event": "disconnected", "error": e.to_string()})
            );
        }
    }
}
