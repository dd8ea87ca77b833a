//! The one hardened subprocess runner every database tool goes through (ARCHITECTURE
//! decision 5).
//!
//! Built on `std::process` with helper threads, not on tokio: the repository engine consumes a
//! blocking [`std::io::Read`] in a worker thread, so the main interface, [`CommandReader`], is
//! a blocking reader. An async caller runs it under `spawn_blocking`.
//!
//! Rules this module enforces for every command:
//! - stdout is streamed to the caller (never buffered whole); stderr is drained concurrently
//!   by a thread into a bounded tail buffer (the last [`STDERR_TAIL_BYTES`] bytes);
//! - at end of stdout the exit status is collected, and a non-zero exit, a death by signal, or
//!   zero bytes of output becomes an [`io::Error`] from `read`, so a consumer that streams the
//!   output into a snapshot aborts it instead of recording a truncated dump;
//! - error messages name the command (program and arguments) and the stderr tail;
//! - a reader dropped before the end kills and reaps its child;
//! - a missing program is reported by name, with the package that provides it.
//!
//! What it must not do: put secrets on a command line (they travel in the environment, which
//! is never printed, or in a 0600 defaults file held by [`ToolCommand::keep_alive`]), or
//! interpret what the tools print: that is the engine modules' job.

use std::any::Any;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// How many trailing bytes of a tool's stderr are kept for error messages.
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// Upper bound for [`ToolCommand::run`], which captures stdout in memory (queries, versions).
pub const MAX_CAPTURED_STDOUT: usize = 64 * 1024 * 1024;

/// Capacity asked for the pipe a streamed command writes to (Linux's default maximum for an
/// unprivileged process, `/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: usize = 1024 * 1024;

/// How long a read waits after one that emptied the pipe (see [`PipeReader`]).
const COALESCE_WAIT: std::time::Duration = std::time::Duration::from_micros(500);

/// Reads a pipe in large gulps: the pipe is widened to [`PIPE_BYTES`] (the unprivileged
/// maximum) instead of Linux's 64 KiB, and a read after one that emptied it waits a moment
/// for it to fill, rather than waking up for each of the writer's small writes (pg_dump
/// writes 4 KiB at a time; each wake-up is two context switches; at 2 GB/s the pipe fills in
/// that time). A dump of the benchmark through `cat |` took 1.07–1.17 s with the 64 KiB pipe
/// and 5,400–6,000 context switches, against 0.71–0.73 s read from the file itself.
///
/// Anything that is not a pipe (a file, a terminal), or a pipe that cannot be widened, is
/// read as it is: this only ever costs speed, never data.
#[derive(Debug)]
pub struct PipeReader<R> {
    inner: R,
    /// Whether the pipe holds [`PIPE_BYTES`], so reads may wait for it to fill a little.
    coalesce: bool,
    /// The last read emptied the pipe (returned less than asked for and than it holds).
    drained: bool,
}

impl<R: Read + std::os::fd::AsFd> PipeReader<R> {
    /// Widens `inner`'s pipe when it is one (best effort).
    pub fn new(inner: R) -> PipeReader<R> {
        let coalesce =
            rustix::pipe::fcntl_setpipe_size(&inner, PIPE_BYTES).is_ok_and(|n| n >= PIPE_BYTES);
        PipeReader {
            inner,
            coalesce,
            drained: false,
        }
    }

    /// Whether reads wait for the widened pipe to fill (false: read as it is).
    pub fn is_widened_pipe(&self) -> bool {
        self.coalesce
    }
}

impl<R: Read> Read for PipeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.coalesce && self.drained {
            std::thread::sleep(COALESCE_WAIT);
        }
        let n = self.inner.read(buf)?;
        // A full pipe's worth means the writer is ahead: read on at once. Less than the pipe
        // holds (and than was asked for) means the read emptied it.
        self.drained = n < buf.len().min(PIPE_BYTES);
        Ok(n)
    }
}

/// Why running a tool failed. Cloneable, so a reader can repeat its error on every later read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// The program is not installed (not found on the search path).
    #[error("`{program}` was not found on PATH; install it ({hint})")]
    NotFound {
        /// The program name.
        program: String,
        /// Which package provides it, e.g. "apt-get install postgresql-client".
        hint: String,
    },
    /// The program exists but could not be started.
    #[error("could not start `{command}`: {source}")]
    Spawn {
        /// The command line (program and arguments; never secrets).
        command: String,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The program exited unsuccessfully (non-zero status or killed by a signal).
    #[error("`{command}` {status}{}", stderr_suffix(.stderr))]
    Failed {
        /// The command line (program and arguments; never secrets).
        command: String,
        /// "exited with status 1", "was killed by signal 9 (SIGKILL)".
        status: String,
        /// The last bytes of its stderr, trimmed.
        stderr: String,
    },
    /// The program exited 0 but wrote nothing: never a valid dump.
    #[error("`{command}` produced no output (it exited 0){}", stderr_suffix(.stderr))]
    NoOutput {
        /// The command line.
        command: String,
        /// The last bytes of its stderr, trimmed.
        stderr: String,
    },
    /// Reading the program's output or writing its input failed.
    #[error("i/o error talking to `{command}`: {source}")]
    Io {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The program printed more than the caller was prepared to hold in memory.
    #[error("`{command}` printed more than {limit} bytes; refusing to buffer it")]
    OutputTooLarge {
        /// The command line.
        command: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Feeding the program's stdin failed because the data source failed (e.g. the snapshot
    /// being restored is corrupt); the program was killed.
    #[error("input for `{command}` failed, the command was stopped: {source}")]
    Input {
        /// The command line.
        command: String,
        /// The error of the input reader.
        #[source]
        source: Arc<io::Error>,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl CommandError {
    /// The stderr tail carried by this error, if any.
    pub fn stderr(&self) -> &str {
        match self {
            CommandError::Failed { stderr, .. } | CommandError::NoOutput { stderr, .. } => stderr,
            _ => "",
        }
    }

    /// The `io::ErrorKind` this error maps to when surfaced through `Read`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            CommandError::NotFound { .. } => io::ErrorKind::NotFound,
            CommandError::NoOutput { .. } => io::ErrorKind::UnexpectedEof,
            CommandError::Spawn { source, .. }
            | CommandError::Io { source, .. }
            | CommandError::Input { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        }
    }

    /// Wrap into an `io::Error` whose inner error downcasts back to `CommandError`.
    pub fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }

    /// Recover a `CommandError` from an `io::Error` produced by [`CommandError::into_io`].
    pub fn from_io(err: &io::Error) -> Option<&CommandError> {
        err.get_ref().and_then(|e| e.downcast_ref::<CommandError>())
    }
}

/// Find `program` on `search_path` (or `$PATH` when `None`). A name containing `/` is
/// returned as is when it exists.
pub fn find_program(program: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    let path = match search_path {
        Some(p) => p.to_os_string(),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .map(|found| past_debian_pg_wrapper(found, program, Path::new(DEBIAN_PG_LIB)))
}

/// Where Debian installs each PostgreSQL major version's client programs.
const DEBIAN_PG_LIB: &str = "/usr/lib/postgresql";

/// Debian's `/usr/bin/pg_dump`, `psql` and the rest are links to `pg_wrapper`, a Perl script
/// that starts the newest installed client when no cluster is named, and costs about 35 ms
/// per run (a backup runs several). Go to that newest client directly; keep the wrapper
/// when `PGCLUSTER` names a cluster (the wrapper then picks by it), or when the layout is
/// not the expected one.
fn past_debian_pg_wrapper(found: PathBuf, program: &str, lib: &Path) -> PathBuf {
    if std::env::var_os("PGCLUSTER").is_some() {
        return found;
    }
    let is_wrapper = std::fs::canonicalize(&found)
        .is_ok_and(|real| real.ends_with("postgresql-common/pg_wrapper"));
    if !is_wrapper {
        return found;
    }
    let Ok(versions) = std::fs::read_dir(lib) else {
        return found;
    };
    versions
        .filter_map(std::result::Result::ok)
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let candidate = e.path().join("bin").join(program);
            is_executable(&candidate).then_some((major, candidate))
        })
        .max_by_key(|(major, _)| *major)
        .map_or(found, |(_, newest)| newest)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A command to run: program, arguments, environment and how to describe it.
///
/// The environment may hold secrets (`PGPASSWORD`); it is never printed. Arguments must not.
pub struct ToolCommand {
    program: String,
    args: Vec<OsString>,
    shown: Vec<Option<String>>,
    env: Vec<(OsString, OsString)>,
    search_path: Option<OsString>,
    package_hint: Option<String>,
    context: Option<String>,
    keep_alive: Vec<Box<dyn Any + Send>>,
}

impl fmt::Debug for ToolCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolCommand")
            .field("command", &self.describe())
            .field("env", &"<not shown>")
            .finish()
    }
}

impl ToolCommand {
    /// A command running `program` (looked up on the search path when spawned).
    pub fn new(program: impl Into<String>) -> Self {
        ToolCommand {
            program: program.into(),
            args: Vec::new(),
            shown: Vec::new(),
            env: Vec::new(),
            search_path: None,
            package_hint: None,
            context: None,
            keep_alive: Vec::new(),
        }
    }

    /// Append one argument. Never pass a secret here: arguments appear in error messages
    /// and in the system's process list.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self.shown.push(None);
        self
    }

    /// Append one argument shown as `shown` in messages (e.g. a temporary file's path that
    /// would only be noise).
    pub fn arg_shown_as(mut self, arg: impl AsRef<OsStr>, shown: impl Into<String>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self.shown.push(Some(shown.into()));
        self
    }

    /// Append several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    /// Set an environment variable for the child (may be a secret; never printed).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Look programs up on this path instead of `$PATH` (also given to the child as `PATH`).
    pub fn search_path(mut self, path: Option<OsString>) -> Self {
        self.search_path = path;
        self
    }

    /// What to suggest installing when the program is missing, e.g. "postgresql-client".
    pub fn package_hint(mut self, package: impl Into<String>) -> Self {
        self.package_hint = Some(package.into());
        self
    }

    /// A short description of the target appended to the command in messages, e.g. the
    /// redacted URL.
    pub fn context(mut self, context: impl Into<String>) -> Self {
        self.context = Some(context.into());
        self
    }

    /// Keep `guard` alive as long as the child runs (e.g. a 0600 defaults file).
    pub fn keep_alive(mut self, guard: impl Any + Send) -> Self {
        self.keep_alive.push(Box::new(guard));
        self
    }

    /// The command as shown in messages: program, arguments, and the context if any.
    pub fn describe(&self) -> String {
        let mut s = self.program.clone();
        for (a, shown) in self.args.iter().zip(&self.shown) {
            s.push(' ');
            match shown {
                Some(shown) => s.push_str(shown),
                None => s.push_str(&shell_quote(&a.to_string_lossy())),
            }
        }
        if let Some(c) = &self.context {
            s.push_str(" [");
            s.push_str(c);
            s.push(']');
        }
        s
    }

    fn build(&self, stdin: Stdio) -> Result<Command, CommandError> {
        let Some(resolved) = find_program(&self.program, self.search_path.as_deref()) else {
            let hint = match &self.package_hint {
                Some(p) => format!("package `{p}`, e.g. `apt-get install {p}`"),
                None => "it is not installed or not on PATH".to_string(),
            };
            return Err(CommandError::NotFound {
                program: self.program.clone(),
                hint,
            });
        };
        let mut cmd = Command::new(resolved);
        cmd.args(&self.args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &self.search_path {
            cmd.env("PATH", p);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        Ok(cmd)
    }

    fn spawn(&self, stdin: Stdio) -> Result<Child, CommandError> {
        let mut cmd = self.build(stdin)?;
        cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CommandError::NotFound {
                    program: self.program.clone(),
                    hint: self
                        .package_hint
                        .as_ref()
                        .map(|p| format!("package `{p}`, e.g. `apt-get install {p}`"))
                        .unwrap_or_else(|| "it is not installed or not on PATH".into()),
                }
            } else {
                CommandError::Spawn {
                    command: self.describe(),
                    source: Arc::new(e),
                }
            }
        })
    }

    /// Start the command and stream its stdout through a [`CommandReader`].
    pub fn spawn_reader(self) -> Result<CommandReader, CommandError> {
        let mut child = self.spawn(Stdio::null())?;
        let description = self.describe();
        let stdout = child.stdout.take().map(PipeReader::new);
        let (tail, stderr_thread) = drain_stderr(&mut child);
        Ok(CommandReader {
            child: Some(child),
            stdout,
            tail,
            stderr_thread,
            description,
            bytes: 0,
            state: ReaderState::Streaming,
            _keep_alive: self.keep_alive,
        })
    }

    /// Run to completion with no input, capturing stdout (at most [`MAX_CAPTURED_STDOUT`]).
    /// Succeeds only on exit status 0. Empty output is allowed here (queries may return none).
    pub fn run(self) -> Result<CommandOutput, CommandError> {
        self.run_with_input(&mut io::empty(), true)
    }

    /// Run to completion with `input` as stdin, capturing stdout in memory (bounded).
    pub fn run_with_bytes(self, input: &[u8]) -> Result<CommandOutput, CommandError> {
        self.run_with_input(&mut io::Cursor::new(input), true)
    }

    /// Run to completion streaming `input` into stdin (restores). Stdout is drained into a
    /// bounded tail like stderr. If `input` fails, the child is killed and the input's error
    /// is returned as [`CommandError::Input`]; if the child exits non-zero, that is the error.
    pub fn run_streaming_input(self, input: &mut dyn Read) -> Result<CommandOutput, CommandError> {
        self.run_with_input(input, false)
    }

    fn run_with_input(
        self,
        input: &mut dyn Read,
        capture_stdout: bool,
    ) -> Result<CommandOutput, CommandError> {
        let description = self.describe();
        let mut child = self.spawn(Stdio::piped())?;
        let mut guard = ChildGuard(Some(&mut child));
        let Some(child_ref) = guard.0.as_deref_mut() else {
            return Err(io_error(&description, io::Error::other("child vanished")));
        };
        let (tail, stderr_thread) = drain_stderr(child_ref);
        let stdout = child_ref.stdout.take();
        let stdout_thread = stdout.map(|mut out| {
            let command = description.clone();
            std::thread::spawn(move || -> Result<(Vec<u8>, Tail), CommandError> {
                let mut captured = Vec::new();
                let mut tail = Tail::new(STDERR_TAIL_BYTES);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match out.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(io_error(&command, e)),
                    };
                    if capture_stdout {
                        if captured.len() + n > MAX_CAPTURED_STDOUT {
                            return Err(CommandError::OutputTooLarge {
                                command,
                                limit: MAX_CAPTURED_STDOUT,
                            });
                        }
                        captured.extend_from_slice(&buf[..n]);
                    } else {
                        tail.push(&buf[..n]);
                    }
                }
                Ok((captured, tail))
            })
        });

        // Feed stdin from this thread. A broken pipe means the child stopped reading: its
        // exit status (below) says why.
        let mut input_error = None;
        if let Some(mut stdin) = child_ref.stdin.take() {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        input_error = Some(e);
                        break;
                    }
                };
                match stdin.write_all(&buf[..n]) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                    Err(e) => {
                        input_error = Some(e);
                        break;
                    }
                }
            }
            drop(stdin);
        }
        if input_error.is_some() {
            let _ = child_ref.kill();
        }
        let status = child_ref.wait().map_err(|e| io_error(&description, e))?;
        guard.0 = None; // reaped
        let stderr = join_tail(stderr_thread, &tail);
        let stdout_result = match stdout_thread {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io_error(&description, io::Error::other("panicked")))),
            None => Ok((Vec::new(), Tail::new(0))),
        };
        if let Some(e) = input_error {
            return Err(CommandError::Input {
                command: description,
                source: Arc::new(e),
            });
        }
        if !status.success() {
            let mut stderr = stderr;
            // Some tools (mariadb in batch mode) report errors on stdout.
            if stderr.is_empty()
                && let Ok((captured, out_tail)) = &stdout_result
            {
                stderr = if capture_stdout {
                    tail_text(captured, STDERR_TAIL_BYTES)
                } else {
                    out_tail.text()
                };
            }
            return Err(CommandError::Failed {
                command: description,
                status: describe_status(status),
                stderr,
            });
        }
        let (stdout, out_tail) = stdout_result?;
        Ok(CommandOutput {
            stdout,
            stdout_tail: out_tail.text(),
            stderr,
        })
    }
}

/// What a completed command printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Captured stdout ([`ToolCommand::run`], [`ToolCommand::run_with_bytes`]); empty for
    /// [`ToolCommand::run_streaming_input`].
    pub stdout: Vec<u8>,
    /// The last bytes of stdout when it was not captured.
    pub stdout_tail: String,
    /// The last bytes of stderr (warnings of a successful run).
    pub stderr: String,
}

impl CommandOutput {
    /// Stdout as (lossy) UTF-8 text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Kills and reaps a child unless disarmed.
struct ChildGuard<'a>(Option<&'a mut Child>);

impl Drop for ChildGuard<'_> {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn io_error(command: &str, e: io::Error) -> CommandError {
    CommandError::Io {
        command: command.to_string(),
        source: Arc::new(e),
    }
}

/// Describe an exit status for humans: "exited with status 1", "was killed by signal 9
/// (SIGKILL)".
pub fn describe_status(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else if let Some(sig) = status.signal() {
        let name = match sig {
            1 => " (SIGHUP)",
            2 => " (SIGINT)",
            6 => " (SIGABRT)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            13 => " (SIGPIPE)",
            15 => " (SIGTERM)",
            _ => "",
        };
        format!("was killed by signal {sig}{name}")
    } else {
        format!("ended with {status}")
    }
}

/// A bounded buffer keeping the last `cap` bytes written to it.
#[derive(Debug)]
pub(crate) struct Tail {
    buf: VecDeque<u8>,
    cap: usize,
    truncated: bool,
}

impl Tail {
    pub(crate) fn new(cap: usize) -> Self {
        Tail {
            buf: VecDeque::with_capacity(cap.min(STDERR_TAIL_BYTES)),
            cap,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        if self.cap == 0 {
            self.truncated |= !data.is_empty();
            return;
        }
        let data = if data.len() > self.cap {
            self.truncated = true;
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        if overflow > 0 {
            self.truncated = true;
            self.buf.drain(..overflow);
        }
        self.buf.extend(data);
    }

    pub(crate) fn text(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if self.truncated && !text.is_empty() {
            format!("…{text}")
        } else {
            text.to_string()
        }
    }
}

fn tail_text(bytes: &[u8], cap: usize) -> String {
    let mut t = Tail::new(cap);
    t.push(bytes);
    t.text()
}

type SharedTail = Arc<Mutex<Tail>>;

fn drain_stderr(child: &mut Child) -> (SharedTail, Option<JoinHandle<()>>) {
    let tail = Arc::new(Mutex::new(Tail::new(STDERR_TAIL_BYTES)));
    let handle = child.stderr.take().map(|mut err| {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => tail
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        })
    });
    (tail, handle)
}

fn join_tail(handle: Option<JoinHandle<()>>, tail: &SharedTail) -> String {
    if let Some(h) = handle {
        let _ = h.join();
    }
    tail.lock().unwrap_or_else(PoisonError::into_inner).text()
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[derive(Debug)]
enum ReaderState {
    Streaming,
    Done,
    Failed(CommandError),
}

/// A running command whose stdout is read through [`std::io::Read`].
///
/// `read` returns the tool's output; at its end it returns `Ok(0)` only if the tool exited 0
/// having written at least one byte, otherwise an `io::Error` wrapping a [`CommandError`]
/// (recover it with [`CommandError::from_io`]). Errors are sticky: every later read repeats
/// them. Dropping the reader before the end kills and reaps the child.
#[derive(Debug)]
pub struct CommandReader {
    child: Option<Child>,
    stdout: Option<PipeReader<ChildStdout>>,
    tail: SharedTail,
    stderr_thread: Option<JoinHandle<()>>,
    description: String,
    bytes: u64,
    state: ReaderState,
    _keep_alive: Vec<Box<dyn Any + Send>>,
}

impl CommandReader {
    /// Bytes of output read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The command line as shown in messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The process id of the child while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True once the output ended and the tool exited successfully.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ReaderState::Done)
    }

    /// The current stderr tail (warnings, or the error once failed).
    pub fn stderr_tail(&self) -> String {
        self.tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .text()
    }

    fn fail(&mut self, err: CommandError) -> io::Error {
        self.kill();
        self.state = ReaderState::Failed(err.clone());
        err.into_io()
    }

    fn kill(&mut self) {
        self.stdout = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn finish_at_eof(&mut self) -> io::Result<usize> {
        self.stdout = None;
        let status = match self.child.take() {
            Some(mut child) => match child.wait() {
                Ok(s) => s,
                Err(e) => {
                    let err = io_error(&self.description, e);
                    return Err(self.fail(err));
                }
            },
            None => return Ok(0),
        };
        let stderr = join_tail(self.stderr_thread.take(), &self.tail);
        if !status.success() {
            let err = CommandError::Failed {
                command: self.description.clone(),
                status: describe_status(status),
                stderr,
            };
            return Err(self.fail(err));
        }
        if self.bytes == 0 {
            let err = CommandError::NoOutput {
                command: self.description.clone(),
                stderr,
            };
            return Err(self.fail(err));
        }
        self.state = ReaderState::Done;
        Ok(0)
    }
}

impl Read for CommandReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            ReaderState::Done => return Ok(0),
            ReaderState::Failed(e) => return Err(e.clone().into_io()),
            ReaderState::Streaming => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let Some(stdout) = self.stdout.as_mut() else {
            return self.finish_at_eof();
        };
        match stdout.read(buf) {
            Ok(0) => self.finish_at_eof(),
            Ok(n) => {
                self.bytes += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let err = io_error(&self.description, e);
                Err(self.fail(err))
            }
        }
    }
}

impl Drop for CommandReader {
    fn drop(&mut self) {
        // Killing the child closes its stderr, so the drain thread ends by itself; it is not
        // joined here because a grandchild could still hold the pipe open.
        self.kill();
    }
}

/// A long-lived command driven line by line over stdin/stdout (e.g. a `psql` session that
/// holds a transaction open). Stderr is drained into a bounded tail. Dropping it kills and
/// reaps the child.
#[derive(Debug)]
pub struct Session {
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<io::BufReader<ChildStdout>>,
    tail: SharedTail,
    stderr_thread: Option<JoinHandle<()>>,
    description: String,
    _keep_alive: Vec<Box<dyn Any + Send>>,
}

impl ToolCommand {
    /// Start the command with stdin and stdout piped, for a line-oriented conversation.
    pub fn spawn_session(self) -> Result<Session, CommandError> {
        let mut child = self.spawn(Stdio::piped())?;
        let description = self.describe();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(io::BufReader::new);
        let (tail, stderr_thread) = drain_stderr(&mut child);
        Ok(Session {
            child: Some(child),
            stdin,
            stdout,
            tail,
            stderr_thread,
            description,
            _keep_alive: self.keep_alive,
        })
    }
}

impl Session {
    /// The command line as shown in messages.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Send text to the child's stdin (flushed).
    pub fn send(&mut self, text: &str) -> Result<(), CommandError> {
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(text.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin closed")),
        };
        match result {
            Ok(()) => Ok(()),
            // The child went away: its exit status and stderr say why.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(self.ended()),
            Err(e) => Err(io_error(&self.description, e)),
        }
    }

    /// Read one line of stdout (without the newline). End of output is an error carrying the
    /// child's exit status and stderr tail: a session is expected to answer.
    pub fn read_line(&mut self) -> Result<String, CommandError> {
        use std::io::BufRead;
        let mut line = Vec::new();
        let n = match self.stdout.as_mut() {
            Some(out) => out
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(&self.description, e))?,
            None => 0,
        };
        if n == 0 {
            return Err(self.ended());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    /// Close stdin and wait for a successful exit.
    pub fn close(mut self) -> Result<CommandOutput, CommandError> {
        self.stdin = None;
        let mut rest = Vec::new();
        if let Some(out) = self.stdout.as_mut() {
            let _ = out.read_to_end(&mut rest);
        }
        let status = match self.child.take() {
            Some(mut c) => c.wait().map_err(|e| io_error(&self.description, e))?,
            None => {
                return Err(io_error(
                    &self.description,
                    io::Error::other("already ended"),
                ));
            }
        };
        let stderr = join_tail(self.stderr_thread.take(), &self.tail);
        if !status.success() {
            return Err(CommandError::Failed {
                command: self.description.clone(),
                status: describe_status(status),
                stderr,
            });
        }
        Ok(CommandOutput {
            stdout: Vec::new(),
            stdout_tail: tail_text(&rest, STDERR_TAIL_BYTES),
            stderr,
        })
    }

    /// The child stopped answering: reap it and describe how it ended.
    fn ended(&mut self) -> CommandError {
        self.stdin = None;
        self.stdout = None;
        let status = self.child.take().map(|mut c| c.wait());
        let stderr = join_tail(self.stderr_thread.take(), &self.tail);
        let status = match status {
            Some(Ok(s)) if s.success() => "ended unexpectedly (exit status 0)".to_string(),
            Some(Ok(s)) => describe_status(s),
            Some(Err(e)) => format!("could not be waited for: {e}"),
            None => "had already ended".to_string(),
        };
        CommandError::Failed {
            command: self.description.clone(),
            status,
            stderr,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> ToolCommand {
        ToolCommand::new("sh").arg("-c").arg(script)
    }

    #[test]
    fn pipe_reader_widens_pipes_and_reads_files_as_they_are() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        // A pipe: widened, and every byte comes through in order.
        let (rx, tx) = rustix::pipe::pipe().unwrap();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                let mut tx = std::fs::File::from(tx);
                for piece in data.chunks(4096) {
                    tx.write_all(piece).unwrap();
                }
            })
        };
        let mut pipe = PipeReader::new(std::fs::File::from(rx));
        assert!(pipe.is_widened_pipe());
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let n = pipe.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(
                n <= PIPE_BYTES,
                "{n} bytes at once from a pipe of {PIPE_BYTES}"
            );
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert_eq!(got, data);
        // A file: not a pipe, read as it is.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let mut file = PipeReader::new(std::fs::File::open(&path).unwrap());
        assert!(!file.is_widened_pipe());
        let mut got = Vec::new();
        file.read_to_end(&mut got).unwrap();
        assert_eq!(got, data);
    }

    fn read_all(r: &mut impl Read) -> (Vec<u8>, io::Result<()>) {
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| ());
        (out, res)
    }

    /// A Debian-like layout: `bin/pg_dump` links to `share/postgresql-common/pg_wrapper`,
    /// clients of majors 13 and 15 under `lib/`; the newest is chosen, and a program that is
    /// not the wrapper is kept.
    #[test]
    fn debian_pg_wrapper_is_skipped_for_the_newest_client() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let root = tempfile::tempdir().unwrap();
        let exe = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let wrapper = root.path().join("share/postgresql-common/pg_wrapper");
        exe(&wrapper);
        let lib = root.path().join("lib");
        exe(&lib.join("13/bin/pg_dump"));
        exe(&lib.join("15/bin/pg_dump"));
        exe(&lib.join("16/bin/psql"));
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        let linked = root.path().join("bin/pg_dump");
        symlink(&wrapper, &linked).unwrap();
        assert_eq!(
            past_debian_pg_wrapper(linked.clone(), "pg_dump", &lib),
            lib.join("15/bin/pg_dump")
        );
        // No client of that name under lib: the wrapper stays.
        assert_eq!(
            past_debian_pg_wrapper(linked.clone(), "pg_restore", &lib),
            linked
        );
        // Not the wrapper: kept as found.
        let plain = lib.join("13/bin/pg_dump");
        assert_eq!(
            past_debian_pg_wrapper(plain.clone(), "pg_dump", &lib),
            plain
        );
    }

    fn command_error(e: &io::Error) -> CommandError {
        CommandError::from_io(e).cloned().expect("a CommandError")
    }

    #[test]
    fn success_streams_everything() {
        let mut r = sh("printf 'hello '; printf 'world'")
            .spawn_reader()
            .unwrap();
        let (out, res) = read_all(&mut r);
        res.unwrap();
        assert_eq!(out, b"hello world");
        assert!(r.is_done());
        assert_eq!(r.bytes_read(), 11);
        // Sticky end.
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn nonzero_exit_mid_stream_is_a_read_error() {
        let mut r = sh("printf 'partial'; echo 'pg_dump: error: server closed' >&2; exit 3")
            .spawn_reader()
            .unwrap();
        let (out, res) = read_all(&mut r);
        assert_eq!(out, b"partial");
        let err = res.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("exited with status 3"), "{msg}");
        assert!(msg.contains("server closed"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(matches!(command_error(&err), CommandError::Failed { .. }));
        // Sticky error.
        let mut buf = [0u8; 4];
        assert!(r.read(&mut buf).is_err());
    }

    #[test]
    fn empty_output_is_a_failure() {
        let mut r = sh("echo 'nothing to do' >&2; exit 0")
            .spawn_reader()
            .unwrap();
        let (out, res) = read_all(&mut r);
        assert!(out.is_empty());
        let err = res.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let msg = err.to_string();
        assert!(msg.contains("produced no output"), "{msg}");
        assert!(msg.contains("nothing to do"), "{msg}");
    }

    #[test]
    fn killed_by_signal_is_a_failure() {
        let mut r = sh("printf 'some'; kill -9 $$").spawn_reader().unwrap();
        let (out, res) = read_all(&mut r);
        assert_eq!(out, b"some");
        let msg = res.unwrap_err().to_string();
        assert!(msg.contains("killed by signal 9 (SIGKILL)"), "{msg}");
    }

    #[test]
    fn missing_program_names_it_and_the_package() {
        let err = ToolCommand::new("strongroom-no-such-tool")
            .package_hint("strongroom-tools")
            .spawn_reader()
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`strongroom-no-such-tool` was not found"),
            "{msg}"
        );
        assert!(msg.contains("apt-get install strongroom-tools"), "{msg}");
        assert_eq!(err.io_kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn search_path_restricts_lookup() {
        let empty = tempfile::tempdir().unwrap();
        let err = ToolCommand::new("sh")
            .search_path(Some(empty.path().as_os_str().to_os_string()))
            .run()
            .unwrap_err();
        assert!(matches!(err, CommandError::NotFound { .. }), "{err}");
    }

    fn pid_alive(pid: u32) -> bool {
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn drop_before_eof_kills_and_reaps_the_child() {
        let mut r = sh("while :; do echo yes; done").spawn_reader().unwrap();
        let pid = r.pid().unwrap();
        let mut buf = [0u8; 16];
        r.read_exact(&mut buf).unwrap();
        assert!(pid_alive(pid));
        drop(r);
        // Killed and reaped: no zombie left behind, the /proc entry is gone.
        assert!(!pid_alive(pid), "child {pid} still exists after drop");
    }

    #[test]
    fn stderr_tail_is_bounded_and_keeps_the_end() {
        let mut r = sh(
            "i=0; while [ $i -lt 2000 ]; do echo \"noise line $i\" >&2; i=$((i+1)); done; \
             echo 'FINAL: the real reason' >&2; exit 1",
        )
        .spawn_reader()
        .unwrap();
        let (_, res) = read_all(&mut r);
        let err = command_error(&res.unwrap_err());
        let stderr = err.stderr();
        assert!(stderr.ends_with("FINAL: the real reason"), "{stderr}");
        assert!(stderr.starts_with('…'));
        assert!(stderr.len() <= STDERR_TAIL_BYTES + 4);
        assert!(!stderr.contains("noise line 0\n"));
    }

    #[test]
    fn large_output_streams_without_buffering() {
        const SIZE: u64 = 100 * 1024 * 1024;
        let mut r = ToolCommand::new("head")
            .args(["-c", &SIZE.to_string(), "/dev/zero"])
            .spawn_reader()
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|&b| b == 0));
            total += n as u64;
        }
        assert_eq!(total, SIZE);
        assert!(r.is_done());
    }

    #[test]
    fn stderr_is_drained_concurrently() {
        // 1 MiB of stderr before any stdout: without a concurrent drain the child would block
        // on a full stderr pipe and this would hang.
        let mut r = sh("head -c 1048576 /dev/zero | tr '\\0' 'e' >&2; printf done")
            .spawn_reader()
            .unwrap();
        let (out, res) = read_all(&mut r);
        res.unwrap();
        assert_eq!(out, b"done");
    }

    #[test]
    fn run_captures_and_fails_on_nonzero() {
        let out = sh("echo hi; echo warn >&2").run().unwrap();
        assert_eq!(out.stdout_text(), "hi\n");
        assert_eq!(out.stderr, "warn");
        let err = sh("echo oops >&2; exit 2").run().unwrap_err();
        assert!(
            err.to_string().contains("exited with status 2: oops"),
            "{err}"
        );
    }

    #[test]
    fn run_streaming_input_feeds_stdin_and_checks_status() {
        let input = vec![b'x'; 3 * 1024 * 1024];
        let out = sh("wc -c")
            .run_streaming_input(&mut io::Cursor::new(&input))
            .unwrap();
        assert_eq!(out.stdout_tail.trim(), (3 * 1024 * 1024).to_string());

        // The child stops reading early and fails: its status wins over the broken pipe.
        let err = sh("head -c 10 >/dev/null; echo 'bad input' >&2; exit 1")
            .run_streaming_input(&mut io::Cursor::new(&input))
            .unwrap_err();
        assert!(err.to_string().contains("bad input"), "{err}");
    }

    struct FailingReader(usize);
    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "corrupt chunk"));
            }
            self.0 -= 1;
            buf[0] = b'a';
            Ok(1)
        }
    }

    #[test]
    fn failing_input_kills_the_child() {
        let err = sh("cat >/dev/null; exit 0")
            .run_streaming_input(&mut FailingReader(5))
            .unwrap_err();
        assert!(matches!(err, CommandError::Input { .. }), "{err}");
        assert!(err.to_string().contains("corrupt chunk"));
    }

    #[test]
    fn describe_quotes_and_never_shows_env() {
        let cmd = ToolCommand::new("pg_dump")
            .args(["-Fc", "two words"])
            .env("PGPASSWORD", "hunter2")
            .context("postgres://u:***@h/db");
        let d = format!("{cmd:?} {}", cmd.describe());
        assert!(
            d.contains("pg_dump -Fc 'two words' [postgres://u:***@h/db]"),
            "{d}"
        );
        assert!(!d.contains("hunter2"));
    }

    #[test]
    fn tail_keeps_last_bytes() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"cdef");
        assert_eq!(t.text(), "…cdef");
        let mut t = Tail::new(4);
        t.push(b"abcdefgh");
        assert_eq!(t.text(), "…efgh");
    }

    #[test]
    fn session_answers_lines_and_reports_death() {
        let mut s = sh("while read -r l; do [ \"$l\" = die ] && { echo 'fatal: asked to die' >&2; exit 4; }; echo \"got $l\"; done")
            .spawn_session()
            .unwrap();
        s.send("a\n").unwrap();
        assert_eq!(s.read_line().unwrap(), "got a");
        s.send("die\n").unwrap();
        let err = s.read_line().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("exited with status 4") && msg.contains("asked to die"),
            "{msg}"
        );

        let mut s = sh("while read -r l; do echo \"$l\"; done")
            .spawn_session()
            .unwrap();
        s.send("x\n").unwrap();
        assert_eq!(s.read_line().unwrap(), "x");
        s.close().unwrap();
    }
}
