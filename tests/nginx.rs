//! framerpc behind a real nginx (docs/DEPLOY.md): `wss://` terminated at
//! nginx and routed by path to two `ws://` example servers, `tls://`
//! terminated by nginx's `stream` module in front of a raw-TCP example
//! server (with the PROXY protocol), a long call that outlives nginx's
//! idle timeout through heartbeats, BUSY naming the real client through
//! trusted proxies, and a server restart behind nginx with the
//! reconnecting client. Fails (never skips) when nginx or its `stream`
//! module is missing: `apt-get install nginx-light libnginx-mod-stream`.
#![cfg(all(feature = "tls", feature = "ws"))]

#[path = "../examples/common/device.rs"]
mod device;
#[path = "../examples/common/greet.rs"]
mod greet;
mod support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use framerpc::{Client, ClientBuilder, ErrorCode, Limits, Outage, Reconnect};
use support::tls_certs::lab;

/// nginx's idle timeouts in this test (`proxy_read_timeout`,
/// `proxy_timeout`): shorter than the long call, longer than heartbeats.
const NGINX_IDLE: &str = "1s";
/// How long a move takes on the device servers: past `NGINX_IDLE`.
const MOVE_MS: &str = "2500";
/// Heartbeats on both sides: ping after 200 ms of silence.
const HEARTBEAT_MS: &str = "200";

fn heartbeat_limits() -> Limits {
    Limits::default().heartbeat(Some((
        Duration::from_millis(200),
        Duration::from_millis(800),
    )))
}

/// A child process killed (by its own id) when dropped.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!("no line starting with {prefix:?}; got {:?}", self.seen),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(mut cmd: Command) -> Proc {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc {
        child,
        lines: rx,
        seen: Vec::new(),
    }
}

fn examples_dir() -> PathBuf {
    // target/<profile>/deps/nginx-… → target/<profile>/examples
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    assert!(
        dir.join("greet_server").exists() && dir.join("device_server").exists(),
        "the example servers are not built in {} (cargo test builds them)",
        dir.display()
    );
    dir
}

fn example(name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(examples_dir().join(name));
    c.args(args);
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_of(url: &str) -> u16 {
    let hostport = url.split("://").nth(1).unwrap_or(url);
    let hostport = hostport.split('/').next().unwrap();
    hostport.rsplit(':').next().unwrap().parse().unwrap()
}

/// The nginx binary: `nginx` on the PATH or in /usr/sbin.
fn nginx_bin() -> PathBuf {
    for c in ["nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx"] {
        if Command::new(c)
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok()
        {
            return PathBuf::from(c);
        }
    }
    panic!(
        "nginx is not installed: apt-get install nginx-light libnginx-mod-stream (or nginx); \
         this test fails rather than skips"
    );
}

/// `load_module …;` for the stream module when nginx has it as a dynamic
/// module (Debian), nothing when it is built in.
fn stream_module_line(nginx: &Path) -> String {
    let out = Command::new(nginx).arg("-V").output().unwrap();
    let v = String::from_utf8_lossy(&out.stderr).into_owned();
    if v.contains("--with-stream=dynamic") {
        let modules = v
            .split_whitespace()
            .find_map(|a| a.strip_prefix("--modules-path="))
            .unwrap_or("/usr/lib/nginx/modules");
        let so = Path::new(modules).join("ngx_stream_module.so");
        assert!(
            so.exists(),
            "nginx's stream module is not installed ({}): apt-get install libnginx-mod-stream",
            so.display()
        );
        return format!("load_module {};", so.display());
    }
    assert!(
        v.contains("--with-stream"),
        "this nginx has no stream module: install nginx (or libnginx-mod-stream)"
    );
    String::new()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

struct Nginx {
    proc: Option<Child>,
    dir: PathBuf,
    https: u16,
    tls: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The configuration of docs/DEPLOY.md with test paths, ports and short
/// timeouts.
fn start_nginx(stage: u16, camera: u16, motor: u16) -> Nginx {
    let nginx = nginx_bin();
    let load = stream_module_line(&nginx);
    let dir = std::env::temp_dir().join(format!("framerpc-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let l = lab();
    std::fs::write(dir.join("server.pem"), &l.server.cert).unwrap();
    std::fs::write(dir.join("server.key"), &l.server.key).unwrap();
    let (https, tls) = (free_port(), free_port());
    let d = dir.display();
    let user = if is_root() { "user root;" } else { "" };
    let conf = format!(
        r#"{load}
{user}
# One process (no workers): killing the child ends nginx whole, and no
# orphaned worker keeps the ports.
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream stage  {{ server 127.0.0.1:{stage}; }}
    upstream camera {{ server 127.0.0.1:{camera}; }}
    server {{
        listen 127.0.0.1:{https} ssl;
        server_name localhost;
        ssl_certificate     {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_read_timeout {NGINX_IDLE};
        proxy_send_timeout {NGINX_IDLE};
        location = /stage  {{ proxy_pass http://stage/greet; }}
        location = /camera {{ proxy_pass http://camera/device; }}
    }}
}}
stream {{
    server {{
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate     {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        proxy_pass 127.0.0.1:{motor};
        proxy_protocol on;
        proxy_connect_timeout 1s;
        proxy_timeout {NGINX_IDLE};
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(&nginx)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting nginx: {e}"));
    let mut n = Nginx {
        proc: Some(child),
        dir,
        https,
        tls,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = [https, tls].iter().all(|p| {
            TcpStream::connect_timeout(&([127, 0, 0, 1], *p).into(), Duration::from_millis(200))
                .is_ok()
        });
        if up {
            break;
        }
        let exited = n.proc.as_mut().unwrap().try_wait().unwrap();
        if exited.is_some() || Instant::now() >= deadline {
            let log = std::fs::read_to_string(n.dir.join("error.log")).unwrap_or_default();
            panic!("nginx did not start ({exited:?}); error.log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    n
}

fn tls_builder() -> ClientBuilder {
    Client::builder()
        .tls_roots_pem(lab().ca.pem.cert.as_bytes())
        .unwrap()
        .timeout(Duration::from_secs(10))
        .limits(heartbeat_limits())
}

#[test]
fn framerpc_behind_nginx() {
    // Two example servers behind the http module (by path), one raw-TCP
    // server behind the stream module; all trust nginx (127.0.0.1).
    let mut stage = spawn(example(
        "greet_server",
        &["--ws", "--trust-proxy", "127.0.0.1", "127.0.0.1:0"],
    ));
    let stage_url = stage.wait_line("listening on ");
    let stage_token = stage.wait_line("token: ");
    let device_args = |addr: &str, ws: bool| {
        let mut a = vec![
            addr.to_owned(),
            "--refuse".into(),
            "--move-ms".into(),
            MOVE_MS.into(),
            "--heartbeat".into(),
            HEARTBEAT_MS.into(),
            "--trust-proxy".into(),
            "127.0.0.1".into(),
        ];
        if ws {
            a.push("--ws".into());
        }
        a
    };
    let args = device_args("127.0.0.1:0", true);
    let mut camera = spawn(example(
        "device_server",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let camera_url = camera.wait_line("listening on ");
    let camera_token = camera.wait_line("token: ");
    let args = device_args("127.0.0.1:0", false);
    let mut motor = spawn(example(
        "device_server",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let motor_addr = motor.wait_line("listening on ");
    let motor_port = port_of(&motor_addr);

    let nginx = start_nginx(port_of(&stage_url), port_of(&camera_url), motor_port);

    // (a) wss:// terminated at nginx, routed by path.
    let s = tls_builder()
        .token(stage_token.as_str())
        .connect_ws_checked(
            &format!("wss://localhost:{}/stage", nginx.https),
            &[&greet::HELLO],
        )
        .unwrap();
    assert_eq!(
        s.call(&greet::HELLO, &"nginx".into()).unwrap(),
        "hello nginx"
    );
    // A wrong token is refused by the server behind nginx.
    let e = tls_builder()
        .token("wrong")
        .connect_ws(&format!("wss://localhost:{}/camera", nginx.https))
        .unwrap_err();
    assert!(e.to_string().contains("401"), "{e}");

    // (c) A long call through nginx's 1 s idle timeout: heartbeats pass.
    let cam = tls_builder()
        .token(camera_token.as_str())
        .connect_ws_checked(
            &format!("wss://localhost:{}/camera", nginx.https),
            &[&device::MOVE_TO],
        )
        .unwrap();
    assert_eq!(cam.call(&device::MOVE_TO, &5.0).unwrap(), 5.0);
    // (d) BUSY names the client from X-Forwarded-For (port 0: HTTP
    // proxies do not pass the client's port), not nginx's connection.
    let other = tls_builder()
        .token(camera_token.as_str())
        .connect_ws(&format!("wss://localhost:{}/camera", nginx.https))
        .unwrap();
    let e = other.call(&device::STOP, &()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY));
    assert!(e.to_string().contains("127.0.0.1:0"), "{e}");
    assert_eq!(cam.call(&device::POSITION, &()).unwrap(), 5.0);

    // (b) tls:// terminated by the stream module; the long call again;
    // the PROXY line names the client with its port.
    let m = tls_builder()
        .reconnect(
            Reconnect::default()
                .initial_delay(Duration::from_millis(50))
                .max_delay(Duration::from_millis(300))
                .during_outage(Outage::Wait),
        )
        .connect_tls_checked(
            &format!("tls://localhost:{}", nginx.tls),
            &[&device::MOVE_TO],
        )
        .unwrap();
    assert_eq!(m.call(&device::MOVE_TO, &7.0).unwrap(), 7.0);
    let other = tls_builder()
        .connect_tls(&format!("tls://localhost:{}", nginx.tls))
        .unwrap();
    let e = other.call(&device::STOP, &()).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BUSY));
    let text = e.to_string();
    assert!(
        text.contains("127.0.0.1:")
            && !text.contains("127.0.0.1:0 ")
            && !text.contains("127.0.0.1:0)"),
        "{text}"
    );
    drop(other);

    // A server restart behind nginx: the reconnecting client comes back.
    drop(motor);
    let args = device_args(&format!("127.0.0.1:{motor_port}"), false);
    let mut motor = spawn(example(
        "device_server",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    motor.wait_line("listening on ");
    let deadline = Instant::now() + Duration::from_secs(15);
    let pos = loop {
        match m.call(&device::POSITION, &()) {
            Ok(p) => break p,
            Err(e) => {
                assert!(Instant::now() < deadline, "no reconnect through nginx: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(pos, 0.0, "a new server process: the motor starts at 0");
    assert_eq!(m.call(&device::MOVE_TO, &1.0).unwrap(), 1.0);
    drop(stage);
    drop(camera);
}
