//! The log of every host this test process runs (they run in-process),
//! kept in memory so a test can check what was, and was not, written to
//! it: for example that a secret never reaches the log.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// One write into the shared buffer.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing (once per process; later calls do nothing). Info
/// level and above, which is where plugin warnings and refusals go.
pub fn capture_log() {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init()
            .expect("no other tracing subscriber in the test process");
        buf
    });
}

/// Everything logged since [`capture_log`].
pub fn captured_log() -> String {
    LOG.get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned())
        .unwrap_or_default()
}
