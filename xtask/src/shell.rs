//! Running commands: every command is printed before it runs, and a failure
//! names the command that failed.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::BARE_TARGET;

/// Why an xtask command stopped.
#[derive(Debug)]
pub enum Failure {
    /// A command could not be started.
    Spawn {
        command: String,
        error: std::io::Error,
    },
    /// A command ran and failed.
    Status { command: String, code: Option<i32> },
    /// Something must be installed by hand: the message says exactly how.
    Missing(String),
    /// The command ran and reports a failure in its own words.
    Failed(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Spawn { command, error } => write!(f, "could not start `{command}`: {error}"),
            Failure::Status {
                command,
                code: Some(code),
            } => {
                write!(f, "`{command}` failed with exit code {code}")
            }
            Failure::Status {
                command,
                code: None,
            } => {
                write!(f, "`{command}` was killed by a signal")
            }
            Failure::Missing(what) => write!(f, "missing: {what}"),
            Failure::Failed(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Prints the heading of a step of a long command.
pub fn step(name: &str) {
    println!("\n== xtask: {name}");
}

/// The root of the workspace.
pub fn root() -> PathBuf {
    // xtask/Cargo.toml lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A command line that is printed, run in the workspace root and checked.
#[derive(Debug)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    remove_env: Vec<&'static str>,
    set_env: Vec<(&'static str, &'static str)>,
}

impl Cmd {
    /// Any program.
    pub fn new(program: impl Into<OsString>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            remove_env: Vec::new(),
            set_env: Vec::new(),
        }
    }

    /// `cargo <subcommand>`, with the cargo that runs xtask.
    pub fn cargo(subcommand: &str) -> Self {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        Cmd::new(cargo).arg(subcommand)
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: &'static str, value: &'static str) -> Self {
        self.set_env.push((key, value));
        self
    }

    /// Removes an environment variable for the command.
    pub fn env_remove(mut self, key: &'static str) -> Self {
        self.remove_env.push(key);
        self
    }

    /// `--package P` for each package.
    pub fn packages(self, packages: &[&str]) -> Self {
        packages
            .iter()
            .fold(self, |cmd, p| cmd.args(["--package", p]))
    }

    /// `--exclude P` for each package.
    pub fn excluding(self, packages: &[&str]) -> Self {
        packages
            .iter()
            .fold(self, |cmd, p| cmd.args(["--exclude", p]))
    }

    /// Builds for the bare-metal target, without inherited flags that are
    /// meant for the host.
    pub fn bare_metal(mut self) -> Self {
        self.remove_env.extend([
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
        ]);
        self.args(["--target", BARE_TARGET])
    }

    fn display(&self) -> String {
        let mut line = Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(root());
        for var in &self.remove_env {
            command.env_remove(var);
        }
        for (key, value) in &self.set_env {
            command.env(key, value);
        }
        command
    }

    /// Runs the command with inherited stdio; fails unless it exits 0.
    pub fn run(&self) -> Result<(), Failure> {
        let line = self.display();
        println!("$ {line}");
        let status = self.command().status().map_err(|error| Failure::Spawn {
            command: line.clone(),
            error,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(Failure::Status {
                command: line,
                code: status.code(),
            })
        }
    }

    /// Runs the command with its standard output printed as it comes and
    /// also returned; fails unless it exits 0.
    pub fn run_capture(&self) -> Result<String, Failure> {
        let line = self.display();
        println!("$ {line}");
        let spawn = |error| Failure::Spawn {
            command: line.clone(),
            error,
        };
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        let mut text = String::new();
        if let Some(out) = child.stdout.take() {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                println!("{l}");
                text.push_str(&l);
                text.push('\n');
            }
        }
        let status = child.wait().map_err(spawn)?;
        if status.success() {
            Ok(text)
        } else {
            Err(Failure::Status {
                command: line,
                code: status.code(),
            })
        }
    }

    /// Runs the command with its standard output and error written to `log`
    /// (created or truncated); returns how it exited, whatever that was.
    pub fn status_to_log(&self, log: &Path) -> Result<ExitStatus, Failure> {
        let line = self.display();
        println!("$ {line} > {} 2>&1", log.display());
        let spawn = |error| Failure::Spawn {
            command: line.clone(),
            error,
        };
        let out = File::create(log).map_err(spawn)?;
        let err = out.try_clone().map_err(spawn)?;
        self.command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(spawn)
    }

    /// Runs the command quietly and returns its standard output, or `None`
    /// if it could not run or failed.
    pub fn output(&self) -> Option<String> {
        let out = self.command().output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
