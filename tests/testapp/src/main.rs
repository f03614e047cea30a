//! `testapp`: a tiny, fully static HTTP server used as the workload container
//! in WakeDock's end-to-end tests.
//!
//! It is packaged as the `wakedock-testapp:latest` image (`FROM scratch`, see
//! `tests/testapp/Dockerfile` and `scripts/build-test-images.sh`) and lets a
//! test simulate slow boots, late health, long-lived streams, WebSockets,
//! chatty logs, one-shot jobs, crashes and OOM kills (`ALLOCATE_MB` past the
//! container's memory limit), all configured per container
//! through environment variables:
//!
//! | variable           | default   | meaning                                                        |
//! |--------------------|-----------|----------------------------------------------------------------|
//! | `PORT`             | `8080`    | listen on `0.0.0.0:PORT`                                       |
//! | `APP_NAME`         | `testapp` | name shown by `GET /`                                          |
//! | `BOOT_DELAY_MS`    | `0`       | sleep this long before binding the port                        |
//! | `HEALTHY_AFTER_MS` | `0`       | `/health` answers 503 until this long after the port was bound |
//! | `SSE_INTERVAL_MS`  | `500`     | interval between `/sse` events                                 |
//! | `LOG_EVERY_MS`     | `0` (off) | print `log line N` to stdout at this interval                  |
//! | `EXIT_AFTER_MS`    | unset     | print `exiting with CODE` and exit this long after start       |
//! | `EXIT_CODE`        | `0`       | exit code used with `EXIT_AFTER_MS`                            |
//! | `ALLOCATE_MB`      | unset     | at start, allocate and touch this many MiB, 1 MiB at a time    |
//! | `BUSY_THREADS`     | `0`       | this many threads that spin on the CPU for as long as it runs  |
//!
//! Endpoints (any other path answers 404):
//!
//! - `GET /`: `hello from APP_NAME (request N)`, N counting requests to `/`;
//!   `(request N, before healthy)` while `/health` still answers 503.
//! - `GET /health`: 200 `ok` once healthy, 503 `starting` before.
//! - `/echo[?query]` (any method): the request line, the headers, an empty
//!   line and the request body, as `text/plain`.
//! - `GET /sse`: `text/event-stream` sending `data: tick N` (N from 1, the
//!   first one at once) every `SSE_INTERVAL_MS` until the client goes away.
//! - `GET /ws`: a WebSocket (RFC 6455) echoing text and binary messages,
//!   answering pings with pongs and close frames with a close frame.
//!
//! Stdout gets `booting`, `listening on :PORT`, one `METHOD TARGET STATUS`
//! line per request (`- - STATUS` for a malformed one), and the lines
//! described above, each flushed at once. `LOG_EVERY_MS` and `EXIT_AFTER_MS`
//! count from process start, before `BOOT_DELAY_MS`. A malformed number in
//! any variable makes the process exit with code 2.
//!
//! `testapp healthcheck [PORT]` instead does `GET http://127.0.0.1:PORT/health`
//! (PORT defaults to `$PORT`, then 8080) and exits 0 on a 200, 1 otherwise.
//! A scratch image has no shell or curl, so the health check must use the
//! exec form, `{"Test": ["CMD", "/testapp", "healthcheck"]}` in the Engine API
//! (bollard's `HealthConfig`); `docker run --health-cmd` always wraps its
//! command in `/bin/sh -c` and so fails in this image.
//!
//! The process is PID 1 in its container, where the kernel ignores a SIGTERM
//! that has no handler, so SIGTERM and SIGINT are handled explicitly: the
//! process prints `received signal N, exiting` and exits 0.

use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha1::{Digest, Sha1};

/// Largest request head (request line plus headers) accepted.
const MAX_HEAD_BYTES: u64 = 16 * 1024;
/// Largest request body, and largest WebSocket message, accepted.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long an idle keep-alive connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// GUID appended to `Sec-WebSocket-Key` (RFC 6455, section 1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn main() {
    let args: Vec<String> = env::args().collect();
    match args.get(1).map(String::as_str) {
        None => serve(),
        Some("healthcheck") => healthcheck(args.get(2).map(String::as_str)),
        Some(other) => {
            eprintln!("testapp: unknown argument {other:?}; usage: testapp [healthcheck [PORT]]");
            process::exit(2);
        }
    }
}

/// Allocates `mb` MiB and writes to every page of it, so it is resident:
/// past the container's memory limit the kernel's OOM killer ends the
/// process (Docker then reports `OOMKilled`).
fn allocate(mb: usize) {
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(mb);
    for i in 0..mb {
        held.push(vec![1u8; 1024 * 1024]);
        if (i + 1) % 16 == 0 {
            log(&format!("allocated {} MiB", i + 1));
        }
    }
    log(&format!("allocated {mb} MiB"));
    // Kept for the process's life.
    std::mem::forget(held);
}

/// Writes one line to stdout and flushes it; errors (closed stdout) are ignored.
fn log(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Keeps one CPU busy (a CPU-threshold alert's load; the container's
/// `--cpus` limit decides how much of a core that is).
fn spin() {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// Reads an optional numeric environment variable; exits 2 on a bad value.
fn env_num<T: std::str::FromStr>(name: &str) -> Option<T> {
    let raw = env::var(name).ok()?;
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    match raw.parse() {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("testapp: invalid value {raw:?} for {name}");
            process::exit(2);
        }
    }
}

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(env_num(name).unwrap_or(default))
}

struct Config {
    app_name: String,
    healthy_after: Duration,
    sse_interval: Duration,
}

struct State {
    config: Config,
    bound_at: Instant,
    root_requests: AtomicU64,
}

fn serve() {
    let started = Instant::now();
    let port: u16 = env_num("PORT").unwrap_or(8080);
    let boot_delay = env_ms("BOOT_DELAY_MS", 0);
    let log_every = env_ms("LOG_EVERY_MS", 0);
    let exit_after: Option<u64> = env_num("EXIT_AFTER_MS");
    let exit_code: i32 = env_num("EXIT_CODE").unwrap_or(0);
    let config = Config {
        app_name: env::var("APP_NAME").unwrap_or_else(|_| "testapp".to_owned()),
        healthy_after: env_ms("HEALTHY_AFTER_MS", 0),
        sse_interval: env_ms("SSE_INTERVAL_MS", 500).max(Duration::from_millis(1)),
    };

    spawn_signal_handler();
    log("booting");

    if let Some(mb) = env_num::<usize>("ALLOCATE_MB") {
        allocate(mb);
    }
    for _ in 0..env_num::<usize>("BUSY_THREADS").unwrap_or(0) {
        thread::spawn(spin);
    }

    if let Some(ms) = exit_after {
        thread::spawn(move || {
            sleep_until(started + Duration::from_millis(ms));
            log(&format!("exiting with {exit_code}"));
            process::exit(exit_code);
        });
    }
    if !log_every.is_zero() {
        thread::spawn(move || {
            let mut next = started;
            for n in 1u64.. {
                next += log_every;
                sleep_until(next);
                log(&format!("log line {n}"));
            }
        });
    }

    thread::sleep(boot_delay);
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("testapp: cannot listen on 0.0.0.0:{port}: {err}");
            process::exit(1);
        }
    };
    let state = Arc::new(State {
        config,
        bound_at: Instant::now(),
        root_requests: AtomicU64::new(0),
    });
    log(&format!("listening on :{port}"));

    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let state = Arc::clone(&state);
                thread::spawn(move || handle_connection(&stream, &state));
            }
            Err(err) => {
                eprintln!("testapp: accept failed: {err}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

fn spawn_signal_handler() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(err) => {
            eprintln!("testapp: cannot install signal handlers: {err}");
            process::exit(1);
        }
    };
    thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            log(&format!("received signal {signal}, exiting"));
            process::exit(0);
        }
    });
}

// ---------------------------------------------------------------------------
// HTTP/1.x
// ---------------------------------------------------------------------------

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether a comma-separated header (e.g. `Connection`) has `token`.
    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            false
        } else if self.version == "HTTP/1.0" {
            self.header_has_token("connection", "keep-alive")
        } else {
            true
        }
    }
}

/// Why reading a request failed: either the peer went away, or it sent
/// something we answer with an error status before closing.
enum ReadError {
    Closed,
    Bad(u16, &'static str),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

fn handle_connection(stream: &TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    loop {
        let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        let request = match read_request(&mut reader) {
            Ok(Some(request)) => request,
            Ok(None) | Err(ReadError::Closed) => return,
            Err(ReadError::Bad(status, reason)) => {
                log(&format!("- - {status}"));
                let _ = respond(stream, &Reply::plain(status, reason), false, true);
                return;
            }
        };
        let keep_alive = route(stream, &mut reader, state, &request);
        if !keep_alive {
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    }
}

/// Reads one `\n`-terminated line of at most `*budget` bytes, trimmed.
fn read_line(reader: &mut impl BufRead, budget: &mut u64) -> Result<Option<String>, ReadError> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(*budget).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    *budget -= n as u64;
    if line.last() != Some(&b'\n') {
        return if *budget == 0 {
            Err(ReadError::Bad(431, "Request Header Fields Too Large"))
        } else {
            Err(ReadError::Closed)
        };
    }
    let line = String::from_utf8_lossy(&line);
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

/// Reads a request; `Ok(None)` when the peer closed before sending one.
fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, ReadError> {
    let mut budget = MAX_HEAD_BYTES;
    // Tolerate empty lines before a request line (RFC 9112, section 2.2).
    let request_line = loop {
        match read_line(reader, &mut budget)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "Bad Request"));
    };
    if method.is_empty() || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(400, "Bad Request"));
    }

    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader, &mut budget)? else {
            return Err(ReadError::Closed);
        };
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(400, "Bad Request"));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        body: Vec::new(),
    };
    if request.header("transfer-encoding").is_some() {
        if !request.header_has_token("transfer-encoding", "chunked") {
            return Err(ReadError::Bad(501, "Not Implemented"));
        }
        request.body = read_chunked_body(reader)?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| ReadError::Bad(400, "Bad Request"))?;
        if length > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "Payload Too Large"));
        }
        request.body = vec![0; length];
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

fn read_chunked_body(reader: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let mut budget = MAX_HEAD_BYTES;
        let line = read_line(reader, &mut budget)?.ok_or(ReadError::Closed)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| ReadError::Bad(400, "Bad Request"))?;
        if size == 0 {
            // Skip trailers up to the empty line.
            while !read_line(reader, &mut budget)?
                .ok_or(ReadError::Closed)?
                .is_empty()
            {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(ReadError::Bad(413, "Payload Too Large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
        if crlf != *b"\r\n" {
            return Err(ReadError::Bad(400, "Bad Request"));
        }
    }
}

/// Answers one request; returns whether the connection may be reused.
fn route(
    stream: &TcpStream,
    reader: &mut BufReader<&TcpStream>,
    state: &State,
    request: &Request,
) -> bool {
    let keep_alive = request.keep_alive();
    let is_get = request.method == "GET" || request.method == "HEAD";
    let (status, reason, body): (u16, &str, Vec<u8>) = match request.path() {
        "/sse" if request.method == "GET" => {
            serve_sse(stream, state, request);
            return false;
        }
        "/ws" if request.method == "GET" => {
            serve_websocket(stream, reader, request);
            return false;
        }
        "/" if is_get => {
            let n = state.root_requests.fetch_add(1, Ordering::Relaxed) + 1;
            // Marks a request that arrived before `/health` passed, so a
            // test can prove a proxy held requests until the app was ready.
            let early = if state.bound_at.elapsed() < state.config.healthy_after {
                ", before healthy"
            } else {
                ""
            };
            let body = format!(
                "hello from {} (request {n}{early})\n",
                state.config.app_name
            );
            (200, "OK", body.into_bytes())
        }
        "/health" if is_get => {
            if state.bound_at.elapsed() >= state.config.healthy_after {
                (200, "OK", b"ok\n".to_vec())
            } else {
                (503, "Service Unavailable", b"starting\n".to_vec())
            }
        }
        "/echo" => {
            let mut body = format!("{} {}\n", request.method, request.target);
            for (name, value) in &request.headers {
                body.push_str(&format!("{name}: {value}\n"));
            }
            body.push('\n');
            let mut body = body.into_bytes();
            body.extend_from_slice(&request.body);
            (200, "OK", body)
        }
        "/" | "/health" | "/sse" | "/ws" => {
            (405, "Method Not Allowed", b"method not allowed\n".to_vec())
        }
        _ => (404, "Not Found", b"not found\n".to_vec()),
    };
    log_request(request, status);
    let reply = Reply {
        status,
        reason,
        content_type: "text/plain; charset=utf-8",
        body: &body,
        extra_headers: &[],
    };
    // HEAD gets the headers, Content-Length included, of the GET response.
    respond(stream, &reply, keep_alive, request.method != "HEAD").is_ok() && keep_alive
}

fn log_request(request: &Request, status: u16) {
    log(&format!("{} {} {status}", request.method, request.target));
}

struct Reply<'a> {
    status: u16,
    reason: &'a str,
    content_type: &'a str,
    body: &'a [u8],
    extra_headers: &'a [(&'a str, &'a str)],
}

impl<'a> Reply<'a> {
    /// A `text/plain` reply whose body is its reason phrase.
    fn plain(status: u16, reason: &'a str) -> Self {
        Reply {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: reason.as_bytes(),
            extra_headers: &[],
        }
    }
}

fn respond(
    mut stream: &TcpStream,
    reply: &Reply<'_>,
    keep_alive: bool,
    with_body: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        reply.status,
        reply.reason,
        reply.content_type,
        reply.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in reply.extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut response = head.into_bytes();
    if with_body {
        response.extend_from_slice(reply.body);
    }
    stream.write_all(&response)?;
    stream.flush()
}

// ---------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------

fn serve_sse(mut stream: &TcpStream, state: &State, request: &Request) {
    log_request(request, 200);
    // The body is delimited by closing the connection, which every HTTP/1.1
    // client and proxy understands.
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n";
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut next = Instant::now();
    for n in 1u64.. {
        if stream
            .write_all(format!("data: tick {n}\n\n").as_bytes())
            .and_then(|()| stream.flush())
            .is_err()
        {
            // The client went away.
            return;
        }
        next += state.config.sse_interval;
        sleep_until(next);
    }
}

// ---------------------------------------------------------------------------
// WebSocket (RFC 6455)
// ---------------------------------------------------------------------------

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

fn websocket_accept(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

fn serve_websocket(stream: &TcpStream, reader: &mut BufReader<&TcpStream>, request: &Request) {
    let key = request.header("sec-websocket-key").unwrap_or("");
    let is_upgrade = request.header_has_token("upgrade", "websocket")
        && request.header_has_token("connection", "upgrade");
    if !is_upgrade || key.is_empty() {
        log_request(request, 400);
        let _ = respond(stream, &Reply::plain(400, "Bad Request"), false, true);
        return;
    }
    if request.header("sec-websocket-version") != Some("13") {
        log_request(request, 426);
        let reply = Reply {
            extra_headers: &[("Sec-WebSocket-Version", "13")],
            ..Reply::plain(426, "Upgrade Required")
        };
        let _ = respond(stream, &reply, false, true);
        return;
    }
    log_request(request, 101);
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        websocket_accept(key)
    );
    let mut writer = stream;
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(None);
    let _ = websocket_echo(reader, &mut writer);
    let _ = stream.shutdown(Shutdown::Both);
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

enum WsError {
    Io,
    Protocol(u16),
}

impl From<io::Error> for WsError {
    fn from(_: io::Error) -> Self {
        WsError::Io
    }
}

fn read_frame(reader: &mut impl Read) -> Result<Frame, WsError> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head)?;
    let fin = head[0] & 0x80 != 0;
    if head[0] & 0x70 != 0 {
        // No extension was negotiated, so RSV bits must be zero.
        return Err(WsError::Protocol(1002));
    }
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut ext = [0u8; 2];
            reader.read_exact(&mut ext)?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            reader.read_exact(&mut ext)?;
            u64::from_be_bytes(ext)
        }
        len => u64::from(len),
    };
    if !masked {
        // Clients must mask every frame (RFC 6455, section 5.1).
        return Err(WsError::Protocol(1002));
    }
    if opcode >= 0x8 && (!fin || len > 125) {
        return Err(WsError::Protocol(1002));
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_BODY_BYTES {
        return Err(WsError::Protocol(1009));
    }
    let mut mask = [0u8; 4];
    reader.read_exact(&mut mask)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok(Frame {
        fin,
        opcode,
        payload,
    })
}

fn write_frame(writer: &mut impl Write, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=0xFFFF => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    writer.write_all(&frame)?;
    writer.flush()
}

fn write_close(writer: &mut impl Write, code: u16) -> io::Result<()> {
    write_frame(writer, OP_CLOSE, &code.to_be_bytes())
}

/// Echoes messages until the peer closes; returns on any error.
fn websocket_echo(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<()> {
    // Opcode and data of a fragmented message being reassembled.
    let mut message: Option<(u8, Vec<u8>)> = None;
    loop {
        let frame = match read_frame(reader) {
            Ok(frame) => frame,
            Err(WsError::Io) => return Ok(()),
            Err(WsError::Protocol(code)) => return write_close(writer, code),
        };
        match frame.opcode {
            OP_PING => write_frame(writer, OP_PONG, &frame.payload)?,
            OP_PONG => {}
            OP_CLOSE => {
                // Echo the status code back (RFC 6455, section 5.5.1).
                let code = frame.payload.get(..2).unwrap_or(&[]);
                return write_frame(writer, OP_CLOSE, code);
            }
            OP_TEXT | OP_BINARY if message.is_none() => {
                if frame.fin {
                    if let Some(code) = echo_message(writer, frame.opcode, &frame.payload)? {
                        return write_close(writer, code);
                    }
                } else {
                    message = Some((frame.opcode, frame.payload));
                }
            }
            OP_CONTINUATION => {
                let Some((opcode, mut data)) = message.take() else {
                    // A continuation with no message started.
                    return write_close(writer, 1002);
                };
                if data.len() + frame.payload.len() > MAX_BODY_BYTES {
                    return write_close(writer, 1009);
                }
                data.extend_from_slice(&frame.payload);
                if frame.fin {
                    if let Some(code) = echo_message(writer, opcode, &data)? {
                        return write_close(writer, code);
                    }
                } else {
                    message = Some((opcode, data));
                }
            }
            // Unknown opcodes, or a new message while a fragmented one is
            // still open.
            _ => return write_close(writer, 1002),
        }
    }
}

/// Sends a complete message back; `Some(code)` asks to close instead.
fn echo_message(writer: &mut impl Write, opcode: u8, data: &[u8]) -> io::Result<Option<u16>> {
    if opcode == OP_TEXT && std::str::from_utf8(data).is_err() {
        return Ok(Some(1007));
    }
    write_frame(writer, opcode, data)?;
    Ok(None)
}

// ---------------------------------------------------------------------------
// `testapp healthcheck [PORT]`
// ---------------------------------------------------------------------------

fn healthcheck(port_arg: Option<&str>) -> ! {
    let port: u16 = match port_arg {
        Some(raw) => match raw.parse() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("testapp healthcheck: invalid port {raw:?}");
                process::exit(1);
            }
        },
        None => env_num("PORT").unwrap_or(8080),
    };
    match check_health(port) {
        Ok(200) => {
            println!("healthy");
            process::exit(0);
        }
        Ok(status) => {
            println!("unhealthy: /health answered {status}");
            process::exit(1);
        }
        Err(err) => {
            println!("unhealthy: {err}");
            process::exit(1);
        }
    }
}

fn check_health(port: u16) -> io::Result<u16> {
    let timeout = Duration::from_secs(3);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut status_line = String::new();
    BufReader::new(&stream).read_line(&mut status_line)?;
    // "HTTP/1.1 200 OK"
    status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed status line"))
}
