//! Each mining device's health: its temperature (read about once a second), the pause above
//! `--temp-stop` and the resume at `--temp-resume`, and what the watchdog did to it; the miner
//! loop polls it and turns what it says into events.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::temperature::Sensors;
use crate::hash::watchdog::WatchdogAction;
use crate::hash::{Hardware, NonceSearcher, Watchdog};

/// How often temperatures are read.
const READ_EVERY: Duration = Duration::from_secs(1);

/// A device at or above `stop` degrees Celsius pauses until it cools to `resume`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TempLimits {
    pub stop: f64,
    pub resume: f64,
}

/// Limits that make no sense.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TempLimitsError {
    #[error("--temp-resume ({resume} °C) must be below --temp-stop ({stop} °C)")]
    ResumeNotBelowStop { stop: f64, resume: f64 },
    #[error("--temp-resume needs --temp-stop")]
    ResumeWithoutStop,
    #[error("a temperature limit must be a number of degrees Celsius from 0 to 150, got {0}")]
    OutOfRange(f64),
}

/// How far below `stop` a device resumes when no resume temperature is given.
const DEFAULT_HYSTERESIS: f64 = 10.0;

impl TempLimits {
    /// `stop` and `resume` as given; `resume` defaults to 10 °C below `stop`.
    ///
    /// # Errors
    /// A resume without a stop, a resume not below the stop, or a value out of range.
    pub fn new(stop: Option<f64>, resume: Option<f64>) -> Result<Option<Self>, TempLimitsError> {
        for value in [stop, resume].into_iter().flatten() {
            if !(0.0..=150.0).contains(&value) {
                return Err(TempLimitsError::OutOfRange(value));
            }
        }
        match (stop, resume) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(TempLimitsError::ResumeWithoutStop),
            (Some(stop), resume) => {
                let resume = resume.unwrap_or(stop - DEFAULT_HYSTERESIS);
                if resume >= stop {
                    return Err(TempLimitsError::ResumeNotBelowStop { stop, resume });
                }
                Ok(Some(Self { stop, resume }))
            }
        }
    }
}

/// Something that happened to a device, as the miner reports it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// Too hot: no more work until it cools down.
    DevicePaused {
        device: String,
        temperature_c: f64,
        stop_c: f64,
    },
    DeviceResumed {
        device: String,
        temperature_c: f64,
        resume_c: f64,
    },
    /// Failed or stalled, and reopened; its range is searched again.
    DeviceRestarted {
        device: String,
        reason: String,
        restarts: u32,
    },
    /// Restarted too often: it does no more work, the other devices go on.
    DeviceDropped {
        device: String,
        reason: String,
        restarts: u32,
    },
}

#[derive(Clone, Copy, Default)]
struct Reading {
    celsius: Option<f64>,
    /// Said once per device: a limit is set and this device has no sensor.
    warned: bool,
}

/// The health of the miner's devices, in the miner's device order.
pub struct DeviceHealth {
    sensors: Sensors,
    limits: Option<TempLimits>,
    watchdog: Option<Watchdog>,
    readings: Mutex<Vec<Reading>>,
    paused: Vec<AtomicBool>,
    last_read: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for DeviceHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHealth")
            .field("limits", &self.limits)
            .field("watchdog", &self.watchdog.as_ref().map(|w| &w.config))
            .finish_non_exhaustive()
    }
}

impl DeviceHealth {
    /// For `devices` devices, with sensors under `sysfs` (`/sys` outside tests).
    #[must_use]
    pub fn new(
        devices: usize,
        sysfs: std::path::PathBuf,
        limits: Option<TempLimits>,
        watchdog: Option<Watchdog>,
    ) -> Self {
        Self {
            sensors: Sensors::new(sysfs),
            limits,
            watchdog,
            readings: Mutex::new(vec![Reading::default(); devices]),
            paused: (0..devices).map(|_| AtomicBool::new(false)).collect(),
            last_read: Mutex::new(None),
        }
    }

    /// Whether device `index` is paused for its temperature.
    #[must_use]
    pub fn is_paused(&self, index: usize) -> bool {
        self.paused
            .get(index)
            .is_some_and(|p| p.load(Ordering::Relaxed))
    }

    /// Device `index`'s last temperature in degrees Celsius.
    #[must_use]
    pub fn temperature(&self, index: usize) -> Option<f64> {
        self.readings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .and_then(|r| r.celsius)
    }

    /// Reads the temperatures when due, pauses and resumes devices, and returns what
    /// happened since the last call (the watchdog's restarts and drops included).
    pub fn poll(&self, devices: &[Arc<dyn NonceSearcher>]) -> Vec<DeviceEvent> {
        let mut events: Vec<DeviceEvent> = self
            .watchdog
            .iter()
            .flat_map(Watchdog::take_events)
            .map(|e| match e.action {
                WatchdogAction::Restarted => DeviceEvent::DeviceRestarted {
                    device: e.device,
                    reason: e.reason,
                    restarts: e.restarts,
                },
                WatchdogAction::Dropped => DeviceEvent::DeviceDropped {
                    device: e.device,
                    reason: e.reason,
                    restarts: e.restarts,
                },
            })
            .collect();
        {
            let mut last = self
                .last_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < READ_EVERY) {
                return events;
            }
            *last = Some(Instant::now());
        }
        let mut readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        for (index, (device, reading)) in devices.iter().zip(readings.iter_mut()).enumerate() {
            let hardware = device.hardware();
            reading.celsius = self.sensors.read(&hardware);
            let (Some(limits), Some(paused)) = (self.limits, self.paused.get(index)) else {
                continue;
            };
            let Some(celsius) = reading.celsius else {
                if !reading.warned && hardware != Hardware::Unknown {
                    reading.warned = true;
                    tracing::warn!(
                        "{}: no temperature sensor found; --temp-stop cannot protect it",
                        device.name()
                    );
                }
                // A sensor that vanished leaves the device as it was.
                continue;
            };
            let was_paused = paused.load(Ordering::Relaxed);
            if !was_paused && celsius >= limits.stop {
                paused.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "{}: {celsius} °C reached --temp-stop {} °C; paused until {} °C",
                    device.name(),
                    limits.stop,
                    limits.resume
                );
                events.push(DeviceEvent::DevicePaused {
                    device: device.name(),
                    temperature_c: celsius,
                    stop_c: limits.stop,
                });
            } else if was_paused && celsius <= limits.resume {
                paused.store(false, Ordering::Relaxed);
                tracing::warn!("{}: cooled to {celsius} °C; resumed", device.name());
                events.push(DeviceEvent::DeviceResumed {
                    device: device.name(),
                    temperature_c: celsius,
                    resume_c: limits.resume,
                });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert_eq!(TempLimits::new(None, None), Ok(None));
        assert_eq!(
            TempLimits::new(Some(85.0), None),
            Ok(Some(TempLimits {
                stop: 85.0,
                resume: 75.0
            }))
        );
        assert_eq!(
            TempLimits::new(Some(80.0), Some(80.0)),
            Err(TempLimitsError::ResumeNotBelowStop {
                stop: 80.0,
                resume: 80.0
            })
        );
        assert_eq!(
            TempLimits::new(None, Some(60.0)),
            Err(TempLimitsError::ResumeWithoutStop)
        );
        assert!(matches!(
            TempLimits::new(Some(f64::NAN), None),
            Err(TempLimitsError::OutOfRange(_))
        ));
    }
}
