//! Shared by the integration tests: the real binary, and the GPU every GPU test needs.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The built `peerhash` binary, with Mesa quiet.
pub fn peerhash(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peerhash"));
    cmd.args(args).env("XDG_RUNTIME_DIR", "/tmp");
    cmd
}

/// Runs the binary and returns its output.
pub fn run(args: &[&str]) -> Output {
    peerhash(args).output().expect("the peerhash binary runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The best GPU adapter (lavapipe in CI). A missing adapter fails the test: GPU tests never
/// skip, since a skipped GPU test is a GPU path nobody checked.
pub fn gpu_backend() -> peerhash::hash::gpu::GpuBackend {
    std::env::set_var("XDG_RUNTIME_DIR", "/tmp");
    let adapters = peerhash::hash::gpu::adapters();
    let adapter = adapters.first().expect(
        "no GPU adapter: install a Vulkan driver (CI uses lavapipe: apt-get install mesa-vulkan-drivers libvulkan1)",
    );
    peerhash::hash::gpu::GpuBackend::open(0, adapter).expect("the GPU adapter opens")
}
