//! `peerhash completions SHELL` and `peerhash man`: generated from the clap definitions, so
//! they never fall behind the flags.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

/// Print a shell completion script (bash, zsh, fish, powershell or elvish) to stdout.
///
/// bash: `peerhash completions bash > ~/.local/share/bash-completion/completions/peerhash`;
/// zsh: write `_peerhash` into a directory on `$fpath`; fish:
/// `peerhash completions fish > ~/.config/fish/completions/peerhash.fish`.
#[derive(Debug, clap::Args)]
pub struct Completions {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

impl Completions {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut command = super::Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(self.shell, &mut command, "peerhash", &mut out);
        write_stdout(&out)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Print the manual page (roff) to stdout: `peerhash man | man -l -`, or save it as
/// `peerhash.1` in a `man1` directory on `MANPATH`.
#[derive(Debug, clap::Args)]
pub struct Man {
    /// A subcommand's own page (`peerhash-mine.1` for `mine`) instead of the main one.
    subcommand: Option<String>,
}

impl Man {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let command = super::Cli::command();
        let (page, title) = match &self.subcommand {
            None => (command, "peerhash".to_owned()),
            Some(name) => {
                let names: Vec<String> = command
                    .get_subcommands()
                    .map(|c| c.get_name().to_owned())
                    .collect();
                let page = command.find_subcommand(name).cloned().with_context(|| {
                    format!("no subcommand {name:?}; one of: {}", names.join(", "))
                })?;
                (page, format!("peerhash-{name}"))
            }
        };
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .title(title)
            .render(&mut out)
            .context("rendering the manual page")?;
        write_stdout(&out)?;
        Ok(ExitCode::SUCCESS)
    }
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}
