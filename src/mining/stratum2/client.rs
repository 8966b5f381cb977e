//! The Stratum V2 client for one pool: TCP, the Noise NX handshake that checks the pool's
//! certificate against the authority key in the URL, `SetupConnection`, one standard channel
//! (header-only jobs: the pool fixes the merkle root, the miner rolls nonce and version bits),
//! and shares. It runs on the network thread like the v1 client; [`crate::mining::chain`] puts
//! it in a failover list.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bitcoin::Target;
use codec_sv2::{
    Decoded, Decrypted, Handshake, InitiatorSent, NoiseDecoder, NoiseEncoder, Transport,
    TransportDecryptState, TransportEncryptState,
};
use framing_sv2::framing::MessageFrame;
use noise_sv2::{Initiator, INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE};

use super::messages::{self, FrameError, PoolMessage};
use super::url::Sv2Endpoint;
use crate::mining::failover::{Failover, PRIMARY_RETRY};
use crate::mining::job::{CoinbaseWork, Job, JobExtra, JobWork, Solution, StandardWork};
use crate::mining::source::{SourceError, SourceEvent, WorkSource};
use crate::mining::test_hook_duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the handshake, SetupConnection and the channel opening may take together.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shares may stay unanswered while the pool sends nothing at all (pools acknowledge
/// shares in batches, so an unanswered share alone says nothing).
const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// The version bits BIP 320 leaves to miners (standard channels may roll them).
const VERSION_MASK: u32 = 0x1fff_e000;
/// What the channel is opened with; the pool sets the first share target from it and then
/// adjusts it (`SetTarget`) from the shares it sees.
const NOMINAL_HASH_RATE: f32 = 10e6;
/// Jobs of the current session remembered for submitting (job ids only grow).
const KEPT_JOBS: usize = 64;

/// Why a Stratum V2 session failed or could not start.
#[derive(Debug, thiserror::Error)]
pub enum Sv2Error {
    #[error("cannot resolve the host: {0}")]
    Resolve(std::io::Error),
    #[error("the host has no address")]
    NoAddress,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("setting up the socket: {0}")]
    Socket(std::io::Error),
    #[error("sending: {0}")]
    Write(std::io::Error),
    #[error("reading: {0}")]
    Read(std::io::Error),
    #[error("the pool closed the connection")]
    Closed,
    #[error("the pool sent nothing for {seconds} s while shares were waiting")]
    Idle { seconds: f64 },
    #[error("no handshake, SetupConnection answer or channel within {seconds} s")]
    HandshakeTimeout { seconds: f64 },
    #[error(
        "the pool's certificate is not signed by the authority key in the URL, or has expired"
    )]
    Authority,
    #[error(
        "the pool's handshake reply is {0} bytes, not {INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE}"
    )]
    HandshakeReplySize(usize),
    #[error("the frame decoder asked for no bytes {MAX_ROUNDS} times in a row")]
    DecoderStalled,
    #[error("the Noise handshake failed: {0}")]
    Handshake(codec_sv2::Error),
    #[error("a frame from the pool does not decrypt or parse: {0}")]
    Frame(codec_sv2::Error),
    #[error("encoding a frame: {0}")]
    Encode(codec_sv2::Error),
    #[error("the pool refused SetupConnection: {code}")]
    SetupRefused { code: String },
    #[error("the pool refused to open a channel for {user:?}: {code}")]
    OpenRefused { user: String, code: String },
    #[error("the pool closed the channel: {reason}")]
    ChannelClosed { reason: String },
    #[error("the pool asked to reconnect")]
    Reconnect,
    #[error("not connected")]
    NotConnected,
}

impl Sv2Error {
    /// Errors retrying cannot fix: a wrong authority key, or a user the pool refuses.
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Authority | Self::OpenRefused { .. })
    }
}

/// A Stratum V2 pool and the user identity to open channels with.
#[derive(Clone, Debug)]
pub struct Sv2Pool {
    pub endpoint: Sv2Endpoint,
    pub user: String,
}

/// An encrypted connection: bytes in, frames out.
struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet handed to the decoder (it takes exact amounts).
    inbuf: Vec<u8>,
    decoder: NoiseDecoder,
    encoder: NoiseEncoder,
    decrypt: Option<TransportDecryptState>,
    encrypt: TransportEncryptState,
    last_data: Instant,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Hands the decoder exactly the bytes it asks for, if they are there.
fn feed(decoder: &mut NoiseDecoder, inbuf: &mut Vec<u8>) -> bool {
    let want = decoder.writable_len();
    if want == 0 {
        return true;
    }
    if inbuf.len() < want {
        return false;
    }
    decoder.writable().copy_from_slice(&inbuf[..want]);
    inbuf.drain(..want);
    true
}

/// Reads what arrives within `timeout` into `inbuf`; `Ok(false)` when nothing did.
fn read_some(
    stream: &mut TcpStream,
    inbuf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<bool, Sv2Error> {
    stream
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .map_err(Sv2Error::Socket)?;
    let mut chunk = [0u8; 16 << 10];
    match stream.read(&mut chunk) {
        Ok(0) => Err(Sv2Error::Closed),
        Ok(n) => {
            inbuf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::Interrupted
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Sv2Error::Read(e)),
    }
}

/// Bound on decoder rounds without new bytes (a decoder that asks for nothing forever is a bug).
const MAX_ROUNDS: usize = 1024;

/// Checks the pool's handshake reply (its ephemeral and static keys and the certificate signed
/// by the authority key) and derives the session keys.
fn finish_handshake(sent: Handshake<InitiatorSent>, reply: &[u8]) -> Result<Transport, Sv2Error> {
    let reply: [u8; INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE] = reply
        .try_into()
        .map_err(|_| Sv2Error::HandshakeReplySize(reply.len()))?;
    sent.step_2(reply).map_err(|e| match e {
        codec_sv2::Error::NoiseSv2Error(noise_sv2::Error::InvalidCertificate(_)) => {
            Sv2Error::Authority
        }
        other => Sv2Error::Handshake(other),
    })
}

/// Runs the miner's side of a handshake against `reply` as if a pool had sent it (for fuzzing:
/// whatever a pool answers before it is authenticated must give an error, never a panic).
///
/// # Errors
/// Whatever is wrong with the reply; [`Sv2Error::Authority`] when the certificate fails.
pub fn check_handshake_reply(authority: [u8; 32], reply: &[u8]) -> Result<(), Sv2Error> {
    let initiator = Initiator::from_raw_k(authority).map_err(|e| Sv2Error::Handshake(e.into()))?;
    let (_, sent) = Handshake::initiator(initiator)
        .step_0()
        .map_err(Sv2Error::Handshake)?;
    finish_handshake(sent, reply).map(|_| ())
}

impl Conn {
    /// Connects and runs the Noise NX handshake as the initiator, checking the certificate.
    fn open(endpoint: &Sv2Endpoint, deadline: Instant) -> Result<Self, Sv2Error> {
        let addr = endpoint
            .host_port()
            .to_socket_addrs()
            .map_err(Sv2Error::Resolve)?
            .next()
            .ok_or(Sv2Error::NoAddress)?;
        let mut stream =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(Sv2Error::Connect)?;
        let _ = stream.set_nodelay(true);
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(Sv2Error::Socket)?;
        let initiator = Initiator::from_raw_k(endpoint.authority())
            .map_err(|e| Sv2Error::Handshake(e.into()))?;
        let (hello, sent) = Handshake::initiator(initiator)
            .step_0()
            .map_err(Sv2Error::Handshake)?;
        let mut encoder = NoiseEncoder::new();
        let bytes = encoder.encode_handshake(hello);
        stream.write_all(bytes.as_ref()).map_err(Sv2Error::Write)?;
        let mut decoder = NoiseDecoder::new();
        let mut inbuf = Vec::new();
        let mut rounds = 0;
        let reply = loop {
            if feed(&mut decoder, &mut inbuf) {
                rounds += 1;
                match decoder
                    .next_handshake_frame::<InitiatorSent>()
                    .map_err(Sv2Error::Handshake)?
                {
                    Decoded::Frame(message) => break message,
                    Decoded::Incomplete(_) if rounds < MAX_ROUNDS => continue,
                    Decoded::Incomplete(_) => return Err(Sv2Error::DecoderStalled),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Sv2Error::HandshakeTimeout {
                    seconds: RESPONSE_TIMEOUT.as_secs_f64(),
                });
            }
            if read_some(
                &mut stream,
                &mut inbuf,
                left.min(Duration::from_millis(100)),
            )? {
                rounds = 0;
            }
        };
        let transport = finish_handshake(sent, reply.payload())?;
        let (encrypt, decrypt) = transport.split();
        Ok(Self {
            stream,
            inbuf,
            decoder,
            encoder,
            decrypt: Some(decrypt),
            encrypt,
            last_data: Instant::now(),
        })
    }

    fn send<T: binary_sv2::Encodable + binary_sv2::GetSize>(
        &mut self,
        message: T,
        msg_type: u8,
        channel_msg: bool,
    ) -> Result<(), Sv2Error> {
        let frame = MessageFrame::from_message(message, msg_type, 0, channel_msg)
            .map_err(|e| Sv2Error::Encode(e.into()))?;
        let bytes = self
            .encoder
            .encode_transport(frame, &mut self.encrypt)
            .map_err(Sv2Error::Encode)?;
        self.stream
            .write_all(bytes.as_ref())
            .map_err(Sv2Error::Write)
    }

    /// The next whole frame already buffered, decoded (or why its payload does not decode);
    /// `None` until more bytes arrive. Errors end the connection.
    fn next_message(&mut self) -> Result<Option<Result<PoolMessage, FrameError>>, Sv2Error> {
        for _ in 0..MAX_ROUNDS {
            if !feed(&mut self.decoder, &mut self.inbuf) {
                return Ok(None);
            }
            let state = self.decrypt.take().ok_or(Sv2Error::NotConnected)?;
            match self
                .decoder
                .next_transport_frame(state)
                .map_err(Sv2Error::Frame)?
            {
                Decrypted::Frame(mut frame, state) => {
                    self.decrypt = Some(state);
                    let header = frame.header();
                    return Ok(Some(messages::decode(
                        header.ext_type_without_channel_msg(),
                        header.msg_type(),
                        frame.payload(),
                    )));
                }
                Decrypted::Incomplete(_, state) => self.decrypt = Some(state),
            }
        }
        Err(Sv2Error::DecoderStalled)
    }

    /// Waits up to `timeout` for bytes; `Ok(false)` when none came.
    fn read(&mut self, timeout: Duration) -> Result<bool, Sv2Error> {
        let got = read_some(&mut self.stream, &mut self.inbuf, timeout)?;
        if got {
            self.last_data = Instant::now();
        }
        Ok(got)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Setup,
    Opening,
    Open,
}

/// What a job message gives, before a tip makes it a [`Job`].
#[derive(Clone)]
enum JobSpec {
    /// Standard channel: the pool fixed the merkle root.
    Standard { version: u32, merkle_root: [u8; 32] },
    /// Extended channel: the coinbase around the extranonce, and its merkle branch.
    Extended {
        version: u32,
        version_rolling: bool,
        branch: Vec<[u8; 32]>,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
    },
}

/// The chain tip the channel's jobs build on.
struct Tip {
    prev_hash: [u8; 32],
    min_ntime: u32,
    nbits: u32,
}

/// One live connection with its channel.
struct Session {
    conn: Conn,
    stage: Stage,
    channel_id: u32,
    /// The group the pool put the channel in: jobs and prev hashes may come addressed to it.
    group_channel_id: Option<u32>,
    target: Target,
    version_mask: u32,
    /// An extended channel (coinbase jobs) rather than a standard one (header-only jobs).
    extended: bool,
    extranonce_prefix: Vec<u8>,
    /// Bytes of extranonce the miner rolls (extended channels).
    extranonce_size: usize,
    /// Jobs the pool sent for a prev hash still to come.
    future: HashMap<u32, JobSpec>,
    tip: Option<Tip>,
    /// Jobs handed out in this session, by job id (the newest [`KEPT_JOBS`]).
    jobs: BTreeMap<u32, Arc<Job>>,
    /// Job ids valid on the current tip.
    live: HashSet<u32>,
    next_sequence: u32,
    /// Shares sent and not yet answered, by sequence number.
    pending: BTreeMap<u32, Solution>,
}

impl Session {
    /// The pool opened the channel (standard or extended): it is ready for jobs at `target`.
    fn opened(&mut self, channel_id: u32, group_channel_id: u32, target: [u8; 32]) -> SourceEvent {
        self.channel_id = channel_id;
        self.group_channel_id = Some(group_channel_id);
        self.target = Target::from_le_bytes(target);
        self.stage = Stage::Open;
        SourceEvent::Difficulty {
            difficulty: difficulty(self.target),
        }
    }
}

/// One Stratum V2 pool as a [`WorkSource`].
pub struct Sv2Source {
    pool: Sv2Pool,
    failover: Failover,
    session: Option<Session>,
    events: Vec<SourceEvent>,
    response_timeout: Duration,
    idle_limit: Duration,
    last_error: Option<String>,
    /// Messages skipped because they did not decode.
    malformed: u64,
    /// Open an extended channel even when the pool would take a standard one (test hook).
    prefer_extended: bool,
}

/// Extranonce bytes asked for on an extended channel: 2^32 coinbases per job, each with the
/// rolled version bits.
const MIN_EXTRANONCE_SIZE: u16 = 4;

/// With the `test-hooks` feature, whether `PEERHASH_SV2_EXTENDED` is set (the tests open
/// extended channels with SRI's pool, which would take standard ones).
fn prefer_extended() -> bool {
    #[cfg(feature = "test-hooks")]
    if std::env::var_os("PEERHASH_SV2_EXTENDED").is_some() {
        return true;
    }
    false
}

/// The difficulty (relative to the difficulty-1 target) of a share target.
fn difficulty(target: Target) -> f64 {
    target.difficulty_float()
}

impl Sv2Source {
    #[must_use]
    pub fn new(pool: Sv2Pool) -> Self {
        Self {
            pool,
            failover: Failover::new(1, PRIMARY_RETRY, Instant::now()),
            session: None,
            events: Vec::new(),
            response_timeout: test_hook_duration("PEERHASH_STRATUM_TIMEOUT_MS", RESPONSE_TIMEOUT),
            idle_limit: test_hook_duration("PEERHASH_STRATUM_IDLE_MS", IDLE_LIMIT),
            last_error: None,
            malformed: 0,
            prefer_extended: prefer_extended(),
        }
    }

    /// Connects, sets the connection up and opens the channel.
    fn open(&mut self) -> Result<(), Sv2Error> {
        let deadline = Instant::now() + self.response_timeout;
        let mut conn = Conn::open(&self.pool.endpoint, deadline)?;
        let (host, port) = self.pool.endpoint.host_port();
        conn.send(
            messages::setup_connection(
                host,
                port,
                if self.prefer_extended {
                    // A pool refuses extended channels on a connection that asked for
                    // standard jobs only.
                    messages::REQUIRES_VERSION_ROLLING
                } else {
                    messages::REQUIRES_STANDARD_JOBS | messages::REQUIRES_VERSION_ROLLING
                },
            ),
            common_messages_sv2::MESSAGE_TYPE_SETUP_CONNECTION,
            common_messages_sv2::CHANNEL_BIT_SETUP_CONNECTION,
        )?;
        self.session = Some(Session {
            conn,
            stage: Stage::Setup,
            channel_id: 0,
            group_channel_id: None,
            target: Target::MAX,
            version_mask: 0,
            extended: false,
            extranonce_prefix: Vec::new(),
            extranonce_size: 0,
            future: HashMap::new(),
            tip: None,
            jobs: BTreeMap::new(),
            live: HashSet::new(),
            next_sequence: 0,
            pending: BTreeMap::new(),
        });
        loop {
            self.drain()?;
            if self
                .session
                .as_ref()
                .is_some_and(|s| s.stage == Stage::Open)
            {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Sv2Error::HandshakeTimeout {
                    seconds: self.response_timeout.as_secs_f64(),
                });
            }
            let session = self.session.as_mut().ok_or(Sv2Error::NotConnected)?;
            session.conn.read(left.min(Duration::from_millis(100)))?;
        }
    }

    /// Handles every whole message already buffered.
    fn drain(&mut self) -> Result<(), Sv2Error> {
        loop {
            let session = self.session.as_mut().ok_or(Sv2Error::NotConnected)?;
            match session.conn.next_message()? {
                Some(Ok(message)) => self.handle(message)?,
                // Authenticated, so from the pool itself: skipped like a malformed v1 line.
                Some(Err(error)) => {
                    self.malformed += 1;
                    tracing::warn!(
                        "{}: ignoring a message that does not decode: {error} ({} so far)",
                        self.pool.endpoint.url(),
                        self.malformed
                    );
                }
                None => return Ok(()),
            }
        }
    }

    /// Handles what arrives within `timeout`: buffered messages first, then one wait for more.
    fn receive(&mut self, timeout: Duration) -> Result<(), Sv2Error> {
        let before = self.events.len();
        self.drain()?;
        if self.events.len() > before {
            return Ok(());
        }
        let session = self.session.as_mut().ok_or(Sv2Error::NotConnected)?;
        if !session.conn.read(timeout)? {
            if !session.pending.is_empty() && session.conn.last_data.elapsed() >= self.idle_limit {
                return Err(Sv2Error::Idle {
                    seconds: self.idle_limit.as_secs_f64(),
                });
            }
            return Ok(());
        }
        self.drain()
    }

    /// A job on the current tip; `min_ntime` when the job brings its own.
    fn make_job(
        session: &mut Session,
        job_id: u32,
        spec: JobSpec,
        min_ntime: Option<u32>,
    ) -> Option<Arc<Job>> {
        let tip = session.tip.as_ref()?;
        let time = min_ntime.map_or(tip.min_ntime, |t| t.max(tip.min_ntime));
        let signed = |version: u32| i32::from_ne_bytes(version.to_ne_bytes());
        let work = match spec {
            JobSpec::Standard {
                version,
                merkle_root,
            } => JobWork::Standard(StandardWork {
                version: signed(version),
                prev_hash: tip.prev_hash,
                merkle_root,
                time,
                bits: tip.nbits,
                version_mask: session.version_mask,
            }),
            JobSpec::Extended {
                version,
                version_rolling,
                branch,
                prefix,
                suffix,
            } => JobWork::Coinbase(CoinbaseWork {
                version: signed(version),
                prev_hash: tip.prev_hash,
                time,
                bits: tip.nbits,
                coinb1: prefix,
                extranonce1: session.extranonce_prefix.clone(),
                extranonce2_size: session.extranonce_size,
                coinb2: suffix,
                branch,
                version_mask: if version_rolling {
                    session.version_mask
                } else {
                    0
                },
            }),
        };
        let job = Arc::new(Job {
            id: job_id.to_string(),
            work,
            target: session.target,
            solo: false,
            height: None,
            extra: JobExtra::None,
        });
        session.jobs.insert(job_id, Arc::clone(&job));
        while session.jobs.len() > KEPT_JOBS {
            session.jobs.pop_first();
        }
        session.live.insert(job_id);
        Some(job)
    }

    /// A job message: kept for its prev hash (a future job) or a job on the current tip now.
    fn on_job(
        session: &mut Session,
        job_id: u32,
        spec: JobSpec,
        min_ntime: Option<u32>,
    ) -> Option<Arc<Job>> {
        if min_ntime.is_none() {
            session.future.insert(job_id, spec);
            // Future jobs only wait for their prev hash; a pool that never sends it must not
            // grow this without bound.
            while session.future.len() > KEPT_JOBS {
                let oldest = *session.future.keys().min()?;
                session.future.remove(&oldest);
            }
            return None;
        }
        Self::make_job(session, job_id, spec, min_ntime)
    }

    fn handle(&mut self, message: PoolMessage) -> Result<(), Sv2Error> {
        let session = self.session.as_mut().ok_or(Sv2Error::NotConnected)?;
        let (stage, channel, group) = (session.stage, session.channel_id, session.group_channel_id);
        let mine = move |id: u32| stage == Stage::Open && (id == channel || Some(id) == group);
        match message {
            PoolMessage::SetupSuccess { flags, .. } => {
                if session.stage != Stage::Setup {
                    return Ok(());
                }
                session.version_mask = if flags & messages::REQUIRES_FIXED_VERSION == 0 {
                    VERSION_MASK
                } else {
                    0
                };
                session.stage = Stage::Opening;
                session.extended =
                    self.prefer_extended || flags & messages::REQUIRES_EXTENDED_CHANNELS != 0;
                if session.extended {
                    session.conn.send(
                        messages::open_extended_channel(
                            1,
                            &self.pool.user,
                            NOMINAL_HASH_RATE,
                            MIN_EXTRANONCE_SIZE,
                        ),
                        mining_sv2::MESSAGE_TYPE_OPEN_EXTENDED_MINING_CHANNEL,
                        mining_sv2::CHANNEL_BIT_OPEN_EXTENDED_MINING_CHANNEL,
                    )?;
                } else {
                    session.conn.send(
                        messages::open_standard_channel(1, &self.pool.user, NOMINAL_HASH_RATE),
                        mining_sv2::MESSAGE_TYPE_OPEN_STANDARD_MINING_CHANNEL,
                        mining_sv2::CHANNEL_BIT_OPEN_STANDARD_MINING_CHANNEL,
                    )?;
                }
            }
            PoolMessage::SetupError { code, .. } => return Err(Sv2Error::SetupRefused { code }),
            PoolMessage::OpenSuccess {
                request_id: 1,
                channel_id,
                target,
                group_channel_id,
                ..
            } if session.stage == Stage::Opening && !session.extended => {
                let opened = session.opened(channel_id, group_channel_id, target);
                self.events.push(opened);
            }
            PoolMessage::OpenExtendedSuccess {
                request_id: 1,
                channel_id,
                target,
                extranonce_size,
                extranonce_prefix,
                group_channel_id,
            } if session.stage == Stage::Opening && session.extended => {
                session.extranonce_prefix = extranonce_prefix;
                session.extranonce_size = usize::from(extranonce_size).min(32);
                let opened = session.opened(channel_id, group_channel_id, target);
                self.events.push(opened);
            }
            PoolMessage::OpenError { code, .. } if session.stage == Stage::Opening => {
                return Err(Sv2Error::OpenRefused {
                    user: self.pool.user.clone(),
                    code,
                });
            }
            PoolMessage::NewJob {
                channel_id,
                job_id,
                min_ntime,
                version,
                merkle_root,
            } if mine(channel_id) && !session.extended => {
                let spec = JobSpec::Standard {
                    version,
                    merkle_root,
                };
                if let Some(job) = Self::on_job(session, job_id, spec, min_ntime) {
                    self.events.push(SourceEvent::NewJob { job, clean: false });
                }
            }
            PoolMessage::NewExtendedJob {
                channel_id,
                job_id,
                min_ntime,
                version,
                version_rolling_allowed,
                merkle_path,
                coinbase_prefix,
                coinbase_suffix,
            } if mine(channel_id) && session.extended => {
                let spec = JobSpec::Extended {
                    version,
                    version_rolling: version_rolling_allowed,
                    branch: merkle_path,
                    prefix: coinbase_prefix,
                    suffix: coinbase_suffix,
                };
                if let Some(job) = Self::on_job(session, job_id, spec, min_ntime) {
                    self.events.push(SourceEvent::NewJob { job, clean: false });
                }
            }
            PoolMessage::SetExtranoncePrefix {
                channel_id,
                extranonce_prefix,
            } if mine(channel_id) => {
                // Jobs from now on; shares of earlier jobs keep the prefix they were built with.
                session.extranonce_prefix = extranonce_prefix;
            }
            PoolMessage::SetNewPrevHash {
                channel_id,
                job_id,
                prev_hash,
                min_ntime,
                nbits,
            } if mine(channel_id) => {
                session.tip = Some(Tip {
                    prev_hash,
                    min_ntime,
                    nbits,
                });
                session.live.clear();
                let activated = session.future.remove(&job_id);
                session.future.clear();
                match activated {
                    Some(spec) => {
                        if let Some(job) = Self::make_job(session, job_id, spec, None) {
                            self.events.push(SourceEvent::NewJob { job, clean: true });
                        }
                    }
                    None => tracing::warn!(
                        "{}: SetNewPrevHash names job {job_id}, which the pool never sent",
                        self.pool.endpoint.url()
                    ),
                }
            }
            PoolMessage::SetTarget {
                channel_id,
                maximum_target,
            } if mine(channel_id) => {
                // Jobs keep the target they were sent under, as the pool checks them.
                session.target = Target::from_le_bytes(maximum_target);
                self.events.push(SourceEvent::Difficulty {
                    difficulty: difficulty(session.target),
                });
            }
            PoolMessage::SubmitSuccess {
                channel_id,
                last_sequence_number,
                ..
            } if mine(channel_id) => {
                let later = session
                    .pending
                    .split_off(&last_sequence_number.saturating_add(1));
                let answered = std::mem::replace(&mut session.pending, later);
                for solution in answered.into_values() {
                    self.events.push(SourceEvent::Accepted { solution });
                }
            }
            PoolMessage::SubmitError {
                channel_id,
                sequence_number,
                code,
            } if mine(channel_id) => {
                if let Some(solution) = session.pending.remove(&sequence_number) {
                    let live = solution
                        .job
                        .id
                        .parse::<u32>()
                        .is_ok_and(|id| session.live.contains(&id));
                    let stale = code == mining_sv2::ERROR_CODE_SUBMIT_SHARES_STALE_SHARE
                        || (code == mining_sv2::ERROR_CODE_SUBMIT_SHARES_INVALID_JOB_ID && !live);
                    self.events.push(SourceEvent::Rejected {
                        solution,
                        reason: code,
                        stale,
                    });
                }
            }
            PoolMessage::CloseChannel { channel_id, reason } if mine(channel_id) => {
                return Err(Sv2Error::ChannelClosed { reason });
            }
            PoolMessage::Reconnect => return Err(Sv2Error::Reconnect),
            other => tracing::debug!("{}: ignoring {other:?}", self.pool.endpoint.url()),
        }
        Ok(())
    }

    /// Sends a share for a job of this session.
    fn submit_now(&mut self, solution: Solution) -> Result<(), Sv2Error> {
        let Some(session) = self.session.as_mut() else {
            return Err(Sv2Error::NotConnected);
        };
        let ours = solution.job.id.parse::<u32>().ok().filter(|id| {
            session
                .jobs
                .get(id)
                .is_some_and(|job| Arc::ptr_eq(job, &solution.job))
        });
        let Some(job_id) = ours else {
            self.events.push(SourceEvent::Rejected {
                solution,
                reason: "the job belongs to an earlier connection".into(),
                stale: true,
            });
            return Ok(());
        };
        let sequence = session.next_sequence;
        session.next_sequence = session.next_sequence.wrapping_add(1);
        let version = |v: i32| u32::from_ne_bytes(v.to_ne_bytes());
        let channel_id = session.channel_id;
        let nonce = solution.nonce();
        let share = |time: u32, rolled: i32| {
            messages::submit_standard(channel_id, sequence, job_id, nonce, time, version(rolled))
        };
        let sent = match &solution.job.work {
            JobWork::Standard(work) => session.conn.send(
                share(work.time, work.version(solution.roll)),
                mining_sv2::MESSAGE_TYPE_SUBMIT_SHARES_STANDARD,
                mining_sv2::CHANNEL_BIT_SUBMIT_SHARES_STANDARD,
            ),
            JobWork::Coinbase(work) => {
                let standard = share(work.time, work.version(solution.roll));
                let extranonce = work.extranonce2(solution.roll);
                match messages::submit_extended(standard, &extranonce) {
                    Some(share) => session.conn.send(
                        share,
                        mining_sv2::MESSAGE_TYPE_SUBMIT_SHARES_EXTENDED,
                        mining_sv2::CHANNEL_BIT_SUBMIT_SHARES_EXTENDED,
                    ),
                    None => Ok(()),
                }
            }
            JobWork::Header(_) => Ok(()),
        };
        session.pending.insert(sequence, solution);
        sent
    }

    /// Ends the session; its unanswered shares are stale (the channel and its jobs are gone).
    fn lost(&mut self, error: &Sv2Error) {
        let url = self.url();
        let reason = error.to_string();
        let mut was_up = false;
        if let Some(session) = self.session.take() {
            was_up = session.stage == Stage::Open;
            for solution in session.pending.into_values() {
                self.events.push(SourceEvent::Rejected {
                    solution,
                    reason: "the connection was lost and the job with it".into(),
                    stale: true,
                });
            }
        }
        let message = format!("{url}: {reason}");
        if was_up {
            self.events.push(SourceEvent::Disconnected {
                url: url.clone(),
                reason,
            });
        } else if self.last_error.as_deref() != Some(message.as_str()) {
            self.events.push(SourceEvent::Unreachable { url, reason });
        }
        self.last_error = Some(message);
        self.failover.failed(Instant::now());
    }
}

impl WorkSource for Sv2Source {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<SourceEvent>, SourceError> {
        if self.session.is_none() {
            let now = Instant::now();
            if self.failover.may_attempt(now) {
                match self.open() {
                    Ok(()) => {
                        self.failover.succeeded();
                        self.last_error = None;
                        let url = self.url();
                        self.events.insert(0, SourceEvent::Connected { url });
                    }
                    Err(error) if error.is_fatal() => {
                        self.session = None;
                        return Err(SourceError::Sv2 {
                            url: self.url(),
                            error,
                        });
                    }
                    Err(error) => {
                        self.events
                            .retain(|e| !matches!(e, SourceEvent::NewJob { .. }));
                        self.lost(&error);
                    }
                }
            } else {
                thread::sleep(timeout.min(self.failover.wait(now)));
            }
        } else if let Err(error) = self.receive(timeout) {
            self.lost(&error);
        }
        Ok(std::mem::take(&mut self.events))
    }

    fn submit(&mut self, solution: Solution) {
        if self.session.is_none() {
            self.events.push(SourceEvent::Rejected {
                solution,
                reason: "the connection was lost and the job with it".into(),
                stale: true,
            });
            return;
        }
        if let Err(error) = self.submit_now(solution) {
            self.lost(&error);
        }
    }

    fn url(&self) -> String {
        self.pool.endpoint.url()
    }

    fn difficulty(&self) -> Option<f64> {
        self.session
            .as_ref()
            .filter(|s| s.stage == Stage::Open)
            .map(|s| difficulty(s.target))
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.clone()
    }
}
