//! Device temperatures where the platform exposes them: Linux hwmon (`/sys/class/hwmon`: the
//! CPU package through coretemp or k10temp, AMD and Intel GPUs through their PCI device) and
//! NVIDIA's NVML, loaded at run time only when an NVIDIA device asks and the library exists.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::hash::Hardware;

/// PCI vendor id of NVIDIA, whose cards have no hwmon sensor: NVML reads them.
const NVIDIA: u32 = 0x10de;

/// hwmon drivers of CPU packages, and the labels of their package sensor.
const CPU_DRIVERS: [&str; 4] = ["coretemp", "k10temp", "zenpower", "cpu_thermal"];
const CPU_LABELS: [&str; 3] = ["Package id 0", "Tctl", "Tdie"];
/// The sensor a GPU's temperature limit applies to (amdgpu: `edge`; others have one).
const GPU_LABELS: [&str; 1] = ["edge"];

/// Reads temperatures under one sysfs root (`/sys`, or a test tree).
pub struct Sensors {
    sysfs: PathBuf,
    nvml: OnceLock<Option<nvml_wrapper::Nvml>>,
}

impl Sensors {
    #[must_use]
    pub fn new(sysfs: PathBuf) -> Self {
        Self {
            sysfs,
            nvml: OnceLock::new(),
        }
    }

    /// Degrees Celsius of `hardware`, or `None` where nothing tells it.
    #[must_use]
    pub fn read(&self, hardware: &Hardware) -> Option<f64> {
        match hardware {
            Hardware::Cpu => self.hwmon(|hwmon| {
                let name = read_text(&hwmon.join("name"))?;
                CPU_DRIVERS
                    .contains(&name.as_str())
                    .then(|| read_sensor(hwmon, &CPU_LABELS))
                    .flatten()
            }),
            Hardware::Pci {
                vendor,
                device,
                bus,
            } => self
                .hwmon(|hwmon| {
                    is_pci_device(&hwmon.join("device"), *vendor, *device, bus.as_deref())
                        .then(|| read_sensor(hwmon, &GPU_LABELS))
                        .flatten()
                })
                .or_else(|| {
                    (*vendor == NVIDIA)
                        .then(|| self.nvml_read(*device, bus.as_deref()))
                        .flatten()
                }),
            Hardware::Unknown => None,
        }
    }

    /// The first reading `sensor` finds among the hwmon directories.
    fn hwmon(&self, sensor: impl Fn(&Path) -> Option<f64>) -> Option<f64> {
        let mut dirs: Vec<PathBuf> = fs::read_dir(self.sysfs.join("class/hwmon"))
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        dirs.sort();
        dirs.iter().find_map(|dir| sensor(dir))
    }

    fn nvml_read(&self, device: u32, bus: Option<&str>) -> Option<f64> {
        let nvml = self
            .nvml
            .get_or_init(|| match nvml_wrapper::Nvml::init() {
                Ok(nvml) => Some(nvml),
                Err(e) => {
                    tracing::info!("NVML is not available ({e}): no NVIDIA temperatures");
                    None
                }
            })
            .as_ref()?;
        let found = match bus {
            Some(bus) => nvml.device_by_pci_bus_id(bus).ok(),
            None => {
                // Without a bus address only an unambiguous id match will do.
                let pci_id = (device << 16) | NVIDIA;
                let mut matching = (0..nvml.device_count().ok()?)
                    .filter_map(|i| nvml.device_by_index(i).ok())
                    .filter(|d| d.pci_info().is_ok_and(|p| p.pci_device_id == pci_id));
                let first = matching.next();
                first.filter(|_| matching.next().is_none())
            }
        };
        let celsius = found?
            .temperature(nvml_wrapper::enum_wrappers::device::TemperatureSensor::Gpu)
            .ok()?;
        Some(f64::from(celsius))
    }
}

/// Whether the sysfs device at `path` is PCI device `vendor:device` (at `bus`, where both
/// sides tell their address).
fn is_pci_device(path: &Path, vendor: u32, device: u32, bus: Option<&str>) -> bool {
    let id = |file: &str| read_text(&path.join(file)).and_then(|text| parse_pci_id(&text));
    if id("vendor") != Some(vendor & 0xffff) || id("device") != Some(device & 0xffff) {
        return false;
    }
    let address = fs::canonicalize(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_lowercase()));
    match (bus, address) {
        (Some(bus), Some(address)) if address.contains(':') => {
            address.trim_start_matches("0000:") == bus.to_lowercase().trim_start_matches("0000:")
        }
        _ => true,
    }
}

/// A sysfs PCI id such as `0x1002`.
#[must_use]
pub fn parse_pci_id(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()
}

/// A hwmon `temp*_input` value (millidegrees Celsius) in degrees; `None` for anything that is
/// not a plausible reading.
#[must_use]
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    #[allow(clippy::cast_precision_loss)]
    let celsius = milli as f64 / 1000.0;
    (-100.0..=250.0).contains(&celsius).then_some(celsius)
}

/// The sensor labelled with the first of `labels` that is there, else `temp1`.
fn read_sensor(hwmon: &Path, labels: &[&str]) -> Option<f64> {
    let labelled = labels.iter().find_map(|wanted| {
        (1..=16).find(|i| {
            read_text(&hwmon.join(format!("temp{i}_label"))).is_some_and(|l| l == *wanted)
        })
    });
    let index = labelled.unwrap_or(1);
    parse_millidegrees(&fs::read_to_string(hwmon.join(format!("temp{index}_input"))).ok()?)
}

fn read_text(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|t| t.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    #[test]
    fn readings_parse_as_sysfs_writes_them() {
        assert_eq!(parse_millidegrees("45000\n"), Some(45.0));
        assert_eq!(parse_millidegrees("-5500"), Some(-5.5));
        assert_eq!(parse_millidegrees("999999"), None);
        assert_eq!(parse_millidegrees(""), None);
        assert_eq!(parse_pci_id("0x1002\n"), Some(0x1002));
        assert_eq!(parse_pci_id("1002"), None);
    }

    #[test]
    fn the_cpu_package_and_a_gpu_are_found_among_other_sensors() {
        let root = tempfile::tempdir().unwrap();
        let hwmon = root.path().join("class/hwmon");
        write(&hwmon.join("hwmon0/name"), "nvme\n");
        write(&hwmon.join("hwmon0/temp1_input"), "30000\n");
        write(&hwmon.join("hwmon1/name"), "coretemp\n");
        write(&hwmon.join("hwmon1/temp1_label"), "Core 0\n");
        write(&hwmon.join("hwmon1/temp1_input"), "50000\n");
        write(&hwmon.join("hwmon1/temp2_label"), "Package id 0\n");
        write(&hwmon.join("hwmon1/temp2_input"), "61500\n");
        write(&hwmon.join("hwmon2/name"), "amdgpu\n");
        write(&hwmon.join("hwmon2/device/vendor"), "0x1002\n");
        write(&hwmon.join("hwmon2/device/device"), "0x73bf\n");
        write(&hwmon.join("hwmon2/temp1_label"), "junction\n");
        write(&hwmon.join("hwmon2/temp1_input"), "80000\n");
        write(&hwmon.join("hwmon2/temp2_label"), "edge\n");
        write(&hwmon.join("hwmon2/temp2_input"), "71000\n");
        let sensors = Sensors::new(root.path().to_owned());
        assert_eq!(sensors.read(&Hardware::Cpu), Some(61.5));
        let gpu = |device| Hardware::Pci {
            vendor: 0x1002,
            device,
            bus: Some("0000:03:00.0".into()),
        };
        assert_eq!(sensors.read(&gpu(0x73bf)), Some(71.0));
        assert_eq!(sensors.read(&gpu(0x7480)), None);
        assert_eq!(sensors.read(&Hardware::Unknown), None);
        assert_eq!(
            Sensors::new(root.path().join("missing")).read(&Hardware::Cpu),
            None
        );
    }
}
