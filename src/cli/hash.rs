use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::BackendArg;
use crate::hash::{Algo, BackendKind, BulkHasher, WorkKind};

/// A file larger than this is one long serial hash, which a CPU core does faster than one GPU
/// thread: it streams on the CPU whatever the backend. Smaller files batch onto the backend.
const GPU_BATCH_BYTES: u64 = 256 << 20;

/// Print digests of files (or standard input) in the `sha256sum` format: `HEX  NAME` (names
/// holding `\`, a newline or a carriage return are escaped as sha256sum does, so `sha256sum -c`
/// reads the output back).
#[derive(Debug, clap::Args)]
pub struct HashFiles {
    /// Digest algorithm; sha256d is SHA-256 applied twice, as Bitcoin does.
    #[arg(long, value_enum, default_value_t = Algo::Sha256)]
    algo: Algo,
    #[command(flatten)]
    backend: BackendArg,
    /// Files to hash; `-` or none reads standard input.
    files: Vec<PathBuf>,
}

/// Streams one input through the CPU hasher in 1 MiB reads: memory stays bounded.
fn stream_digest(algo: Algo, input: &mut dyn Read) -> io::Result<Vec<u8>> {
    fn feed<D: Digest>(mut hasher: D, input: &mut dyn Read) -> io::Result<D> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match input.read(&mut buf) {
                Ok(0) => return Ok(hasher),
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(match algo {
        Algo::Sha1 => feed(Sha1::new(), input)?.finalize().to_vec(),
        Algo::Sha256 => feed(Sha256::new(), input)?.finalize().to_vec(),
        Algo::Sha256d => Sha256::digest(feed(Sha256::new(), input)?.finalize()).to_vec(),
    })
}

fn open(path: &PathBuf) -> anyhow::Result<Box<dyn Read>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        anyhow::bail!("{}: is a directory", path.display());
    }
    Ok(Box::new(file))
}

impl HashFiles {
    pub fn run(mut self) -> anyhow::Result<ExitCode> {
        let backend = self.backend.open_resilient(WorkKind::bulk(self.algo))?;
        if self.files.is_empty() {
            self.files.push(PathBuf::from("-"));
        }
        let mut failed = false;
        let mut out = io::stdout().lock();
        // Batches small files for the GPU; each result prints in input order.
        let mut batch: Vec<(&Path, Vec<u8>)> = Vec::new();
        let mut batch_bytes = 0u64;
        for path in &self.files {
            let name = path.display().to_string();
            let size = std::fs::metadata(path).map(|m| m.len()).ok();
            let batchable = backend.kind() == BackendKind::Gpu
                && path.as_os_str() != "-"
                && size.is_some_and(|s| s <= GPU_BATCH_BYTES);
            if !batchable || batch_bytes + size.unwrap_or(0) > GPU_BATCH_BYTES {
                self.flush(&*backend, &mut batch, &mut out)?;
                batch_bytes = 0;
            }
            let result = open(path).and_then(|mut input| {
                if batchable {
                    let mut data = Vec::new();
                    input.read_to_end(&mut data).with_context(|| name.clone())?;
                    Ok(Some(data))
                } else {
                    let digest =
                        stream_digest(self.algo, &mut input).with_context(|| name.clone())?;
                    out.write_all(&sum_line(&digest, path))?;
                    Ok(None)
                }
            });
            match result {
                Ok(Some(data)) => {
                    batch_bytes += data.len() as u64;
                    batch.push((path, data));
                }
                Ok(None) => {}
                Err(e) if super::is_broken_pipe(&e) => return Err(e),
                Err(e) => {
                    self.flush(&*backend, &mut batch, &mut out)?;
                    batch_bytes = 0;
                    eprintln!("peerhash: {e:#}");
                    failed = true;
                }
            }
        }
        self.flush(&*backend, &mut batch, &mut out)?;
        Ok(if failed {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    }

    fn flush(
        &self,
        backend: &dyn BulkHasher,
        batch: &mut Vec<(&Path, Vec<u8>)>,
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let messages: Vec<&[u8]> = batch.iter().map(|(_, data)| data.as_slice()).collect();
        let digests = backend.digest_messages(self.algo, &messages)?;
        for ((path, _), digest) in batch.iter().zip(digests) {
            out.write_all(&sum_line(&digest, path))?;
        }
        batch.clear();
        Ok(())
    }
}

/// One line of `sha256sum` output for `name`, its bytes as they are on disk. GNU coreutils
/// escapes `\` as `\\`, newline as `\n` and carriage return as `\r`, and then starts the line
/// with `\` so that `sha256sum -c` knows to unescape.
fn sum_line(digest: &[u8], name: &Path) -> Vec<u8> {
    let name = name.as_os_str().as_bytes();
    let escape = name.iter().any(|b| matches!(b, b'\\' | b'\n' | b'\r'));
    let mut line = Vec::with_capacity(name.len() + 2 * digest.len() + 4);
    if escape {
        line.push(b'\\');
    }
    line.extend_from_slice(hex::encode(digest).as_bytes());
    line.extend_from_slice(b"  ");
    for &byte in name {
        match byte {
            b'\\' => line.extend_from_slice(b"\\\\"),
            b'\n' => line.extend_from_slice(b"\\n"),
            b'\r' => line.extend_from_slice(b"\\r"),
            other => line.push(other),
        }
    }
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::sum_line;
    use std::path::Path;

    #[test]
    fn names_are_escaped_as_sha256sum_does() {
        let line = |name: &str| String::from_utf8(sum_line(&[0xab], Path::new(name))).unwrap();
        assert_eq!(line("plain name"), "ab  plain name\n");
        assert_eq!(line("a\\b"), "\\ab  a\\\\b\n");
        assert_eq!(line("n\nl"), "\\ab  n\\nl\n");
        assert_eq!(line("c\rr"), "\\ab  c\\rr\n");
    }
}
