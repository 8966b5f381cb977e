//! `--backend auto|cpu|gpu[:INDEX|:NAME]`: parsing the choice and opening the backend.

use std::str::FromStr;
use std::sync::Arc;

use super::cpu::CpuBackend;
use super::gpu::{self, GpuBackend};
use super::probe::{self, DeviceId};
use super::{Backend, BackendKind, FallbackBackend, HashError, MultiBackend, Watchdog, WorkKind};

/// Which backend the user asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// Whichever of the real GPUs (discrete or integrated) and the CPU measured fastest at the
    /// kind of work (see [`probe`]); the CPU, unmeasured, when there is no real GPU. Never a
    /// CPU-type adapter such as lavapipe: it is slower than the CPU path.
    #[default]
    Auto,
    Cpu,
    /// The best adapter of any type (lavapipe included, when it is all there is).
    Gpu,
    /// Adapter `N` in the order `peerhash devices` lists.
    GpuIndex(usize),
    /// The first adapter whose name contains this text, ignoring case.
    GpuName(String),
    /// Every real GPU and the CPU together.
    All,
    /// Several devices together, e.g. `gpu:0,cpu`.
    List(Vec<BackendChoice>),
}

/// A backend that could not be chosen or opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendChoiceError {
    #[error("unknown backend {0:?}: expected auto, cpu, gpu, gpu:INDEX, gpu:NAME, all, or a comma-separated list such as gpu:0,cpu")]
    Unknown(String),
    #[error("no GPU adapter found (is a Vulkan, Metal or DX12 driver installed? `peerhash devices` lists what wgpu sees)")]
    NoAdapter,
    #[error("no GPU adapter {0} (`peerhash devices` lists {1} adapter(s))")]
    NoSuchAdapter(String, usize),
    #[error(transparent)]
    Open(#[from] HashError),
}

impl FromStr for BackendChoice {
    type Err = BackendChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(',') {
            let choices = s
                .split(',')
                .map(|part| match part.trim().parse()? {
                    Self::Auto | Self::All | Self::List(_) => {
                        Err(BackendChoiceError::Unknown(s.to_owned()))
                    }
                    choice => Ok(choice),
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::List(choices));
        }
        match s {
            "all" => Ok(Self::All),
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            _ => match s.strip_prefix("gpu:") {
                Some(index) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => {
                    index
                        .parse()
                        .map(Self::GpuIndex)
                        .map_err(|_| BackendChoiceError::Unknown(s.into()))
                }
                Some(name) if !name.trim().is_empty() => Ok(Self::GpuName(name.to_owned())),
                _ => Err(BackendChoiceError::Unknown(s.to_owned())),
            },
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Gpu => f.write_str("gpu"),
            Self::GpuIndex(i) => write!(f, "gpu:{i}"),
            Self::GpuName(name) => write!(f, "gpu:{name}"),
            Self::All => f.write_str("all"),
            Self::List(choices) => {
                let parts: Vec<String> = choices.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

impl BackendChoice {
    /// The index into [`gpu::adapters`] this choice picks, if any: `None` for the CPU, and for
    /// `auto` and the multi-device choices, which are not one fixed adapter (`auto` measures:
    /// see [`open_backend`]).
    ///
    /// # Errors
    /// A GPU asked for that is not there.
    pub fn adapter_index(
        &self,
        adapters: &[wgpu::Adapter],
    ) -> Result<Option<usize>, BackendChoiceError> {
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(wgpu::Adapter::get_info).collect();
        match self {
            Self::Cpu | Self::Auto | Self::All | Self::List(_) => Ok(None),
            Self::Gpu => (!infos.is_empty())
                .then_some(Some(0))
                .ok_or(BackendChoiceError::NoAdapter),
            Self::GpuIndex(i) => (*i < infos.len())
                .then_some(Some(*i))
                .ok_or_else(|| BackendChoiceError::NoSuchAdapter(i.to_string(), infos.len())),
            Self::GpuName(name) => {
                let needle = name.to_lowercase();
                infos
                    .iter()
                    .position(|i| i.name.to_lowercase().contains(&needle))
                    .map(Some)
                    .ok_or_else(|| {
                        BackendChoiceError::NoSuchAdapter(format!("{name:?}"), infos.len())
                    })
            }
        }
    }
}

/// Opens the chosen backend for `work` (only `auto` looks at it). `auto` falls back to the CPU
/// when its GPU fails to open.
///
/// # Errors
/// An explicit GPU choice that is not there or does not open.
pub fn open_backend(
    choice: &BackendChoice,
    work: WorkKind,
) -> Result<Arc<dyn Backend>, BackendChoiceError> {
    open_watched_backend(choice, work, None)
}

/// [`open_backend`] with every GPU it opens under `watchdog`.
///
/// # Errors
/// As [`open_backend`].
pub fn open_watched_backend(
    choice: &BackendChoice,
    work: WorkKind,
    watchdog: Option<&Watchdog>,
) -> Result<Arc<dyn Backend>, BackendChoiceError> {
    let watch = |device: Arc<dyn Backend>| match watchdog {
        Some(watchdog) => watchdog.watch(device),
        None => device,
    };
    match choice {
        BackendChoice::Cpu => return Ok(Arc::new(CpuBackend::new(None)?)),
        BackendChoice::Auto => return open_auto(work).map(watch),
        BackendChoice::All | BackendChoice::List(_) => {
            let mut devices = open_watched_devices(choice, work, watchdog)?;
            return Ok(if devices.len() == 1 {
                devices.remove(0)
            } else {
                Arc::new(MultiBackend::new(devices))
            });
        }
        _ => {}
    }
    let adapters = gpu::adapters();
    let Some(index) = choice.adapter_index(&adapters)? else {
        return Ok(Arc::new(CpuBackend::new(None)?));
    };
    Ok(watch(Arc::new(GpuBackend::open(index, &adapters[index])?)))
}

/// `auto`: the fastest device at `work` as measured (or cached) now; the CPU at once when no
/// real GPU is there to compare with, so plain CPU machines never pay for a probe.
fn open_auto(work: WorkKind) -> Result<Arc<dyn Backend>, BackendChoiceError> {
    let adapters = gpu::adapters();
    if !adapters
        .iter()
        .any(|a| gpu::context::is_real_gpu(a.get_info().device_type))
    {
        return Ok(Arc::new(CpuBackend::new(None)?));
    }
    let mut survey = probe::survey(&adapters, false)?;
    let id = probe::choose(work, &survey.candidates());
    tracing::info!("--backend auto: {id} for {work}");
    if let Some(backend) = survey.take(id) {
        return Ok(backend);
    }
    let DeviceId::Gpu(index) = id else {
        return Ok(Arc::new(CpuBackend::new(None)?));
    };
    // Chosen from the cache, so not opened yet.
    match GpuBackend::open(index, &adapters[index]) {
        Ok(gpu) => Ok(Arc::new(gpu)),
        Err(e) => {
            tracing::warn!("{e}; using the CPU backend");
            Ok(Arc::new(CpuBackend::new(None)?))
        }
    }
}

/// Opens the chosen backend for long work (hashing files, searching nonces, mining): a GPU
/// backend that fails mid-run hands over to the CPU instead of failing the run. `selftest`
/// and `bench` use [`open_backend`], so they see GPU failures as they are.
///
/// # Errors
/// As [`open_backend`].
pub fn open_resilient_backend(
    choice: &BackendChoice,
    work: WorkKind,
) -> Result<Arc<dyn Backend>, BackendChoiceError> {
    open_watched_resilient_backend(choice, work, None)
}

/// [`open_resilient_backend`] with every GPU under `watchdog`: a GPU restarted too often is
/// dropped, and the CPU takes over.
///
/// # Errors
/// As [`open_backend`].
pub fn open_watched_resilient_backend(
    choice: &BackendChoice,
    work: WorkKind,
    watchdog: Option<&Watchdog>,
) -> Result<Arc<dyn Backend>, BackendChoiceError> {
    let backend = open_watched_backend(choice, work, watchdog)?;
    if backend.kind() == BackendKind::Cpu {
        return Ok(backend);
    }
    Ok(Arc::new(FallbackBackend::new(
        backend,
        CpuBackend::new(None)?,
    )))
}

/// The separate devices of a choice, for callers that drive each device from its own thread
/// (the miner): every real GPU and the CPU for `all` (software adapters such as lavapipe only
/// when listed), each entry of a list, or the one backend of any other choice (resilient: a GPU
/// that fails hands over to the CPU). `work` only matters to `auto`.
///
/// # Errors
/// A listed device that is not there or does not open.
pub fn open_devices(
    choice: &BackendChoice,
    work: WorkKind,
) -> Result<Vec<Arc<dyn Backend>>, BackendChoiceError> {
    open_watched_devices(choice, work, None)
}

/// [`open_devices`] with every GPU under `watchdog`.
///
/// # Errors
/// As [`open_devices`].
pub fn open_watched_devices(
    choice: &BackendChoice,
    work: WorkKind,
    watchdog: Option<&Watchdog>,
) -> Result<Vec<Arc<dyn Backend>>, BackendChoiceError> {
    match choice {
        BackendChoice::List(choices) => choices
            .iter()
            .map(|c| open_watched_backend(c, work, watchdog))
            .collect(),
        BackendChoice::All => {
            let mut devices: Vec<Arc<dyn Backend>> = Vec::new();
            for (index, adapter) in gpu::adapters().iter().enumerate() {
                if !gpu::context::is_real_gpu(adapter.get_info().device_type) {
                    continue;
                }
                match GpuBackend::open(index, adapter) {
                    Ok(gpu) => devices.push(match watchdog {
                        Some(watchdog) => watchdog.watch(Arc::new(gpu)),
                        None => Arc::new(gpu),
                    }),
                    Err(e) => tracing::warn!("{e}; going on without it"),
                }
            }
            devices.push(Arc::new(CpuBackend::new(None)?));
            Ok(devices)
        }
        _ => Ok(vec![open_watched_resilient_backend(
            choice, work, watchdog,
        )?]),
    }
}
