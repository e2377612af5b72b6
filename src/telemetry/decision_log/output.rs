//! Where the writer thread puts lines: standard output, a file rotated by
//! size, or OTLP log records.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::Sink;

/// Bytes buffered before a `write(2)`; a batch (what the writer takes from
/// the queue in one go) is flushed at its end anyway. Large writes matter:
/// most of a buffered write's cost is per call, not per byte, so
/// `BufWriter`'s default of 8 KiB costs several times more per line.
pub(super) const WRITE_BUFFER: usize = 256 * 1024;

pub(super) enum Output {
    Stdout(BufWriter<io::Stdout>),
    Otlp {
        provider: opentelemetry_sdk::logs::SdkLoggerProvider,
        logger: opentelemetry_sdk::logs::SdkLogger,
    },
    File {
        file: BufWriter<File>,
        path: PathBuf,
        written: u64,
        max_bytes: u64,
        keep: u32,
    },
}

impl Output {
    pub(super) fn open(sink: &Sink) -> io::Result<Self> {
        Ok(match sink {
            Sink::Stdout => Output::Stdout(BufWriter::with_capacity(WRITE_BUFFER, io::stdout())),
            Sink::Otlp => {
                use opentelemetry::logs::LoggerProvider as _;
                let provider =
                    crate::telemetry::otlp::logger_provider().map_err(io::Error::other)?;
                let logger = provider.logger("stepup.decisions");
                Output::Otlp { provider, logger }
            }
            Sink::File {
                path,
                max_bytes,
                keep,
            } => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                let written = file.metadata()?.len();
                Output::File {
                    file: BufWriter::with_capacity(WRITE_BUFFER, file),
                    path: path.clone(),
                    written,
                    max_bytes: *max_bytes,
                    keep: *keep,
                }
            }
        })
    }

    pub(super) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(w) => {
                w.write_all(line)?;
                w.write_all(b"\n")
            }
            Output::Otlp { logger, .. } => {
                use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
                let mut record = logger.create_log_record();
                record.set_timestamp(std::time::SystemTime::now());
                record.set_severity_number(Severity::Info);
                record.set_event_name("stepup.decision");
                record.set_body(AnyValue::from(String::from_utf8_lossy(line).into_owned()));
                logger.emit(record);
                Ok(())
            }
            Output::File {
                file,
                path,
                written,
                max_bytes,
                keep,
            } => {
                if *written > 0 && *written + line.len() as u64 + 1 > *max_bytes {
                    file.flush()?;
                    rotate(path, *keep)?;
                    *file = BufWriter::with_capacity(
                        WRITE_BUFFER,
                        OpenOptions::new().create(true).append(true).open(&*path)?,
                    );
                    *written = 0;
                }
                file.write_all(line)?;
                file.write_all(b"\n")?;
                *written += line.len() as u64 + 1;
                Ok(())
            }
        }
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(w) => w.flush(),
            Output::File { file, .. } => file.flush(),
            Output::Otlp { .. } => Ok(()), // the batch processor exports on its own
        }
    }

    pub(super) fn close(&mut self) -> io::Result<()> {
        match self {
            Output::Otlp { provider, .. } => provider.shutdown().map_err(io::Error::other),
            other => other.flush(),
        }
    }
}

/// `path.N-1` -> `path.N`, ..., `path` -> `path.1`; the oldest is removed.
pub(super) fn rotate(path: &std::path::Path, keep: u32) -> io::Result<()> {
    let numbered = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1))?;
        }
    }
    std::fs::rename(path, numbered(1))
}
