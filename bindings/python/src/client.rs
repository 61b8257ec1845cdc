//! The native client: configuration and the entry points of the three styles.

use crate::aio::{self, AsyncConnection, BoxFut};
use crate::callback::{self, CallbackConnection};
use crate::errors;
use crate::halves::{Halves, Rx, Tx};
use crate::hooks::{DecodeHook, PyTokenProvider};
use crate::sync::{self, RealtimeConnection, SyncCore, WsConnection};
use crate::util::{self, First};
use fal_realtime::{
    ClientConfig, Credentials, RealtimeOptions, RealtimeSession, WsConnection as CoreWs, WsOptions,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};
use std::sync::Arc;

/// The native client. Use `fal_realtime.Client`, which wraps it.
#[pyclass(frozen, module = "fal_realtime._native", name = "Client")]
pub struct Client {
    inner: fal_realtime::Client,
}

/// Options shared by every entry point, as Python passes them.
struct Opts {
    path: Option<String>,
    use_jwt: bool,
    max_buffering: Option<i64>,
    token_expiration: Option<std::time::Duration>,
    token_provider: Option<Py<PyAny>>,
    decode_message: Option<Py<PyAny>>,
}

fn max_buffering(v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    let Some(v) = v else { return Ok(None) };
    if v.is_none() {
        return Ok(None);
    }
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(errors::invalid(format!(
            "max_buffering must be an integer between 1 and 60, got {}",
            v.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into())
        )));
    }
    match v.extract::<i64>() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(errors::invalid(
            "max_buffering must be an integer between 1 and 60".to_string(),
        )),
    }
}

impl Opts {
    fn realtime(self, event_loop: Option<Py<PyAny>>) -> RealtimeOptions {
        let decoder = self.decode_message.map(|f| DecodeHook::new(f).decoder());
        RealtimeOptions {
            path: self.path,
            use_jwt: self.use_jwt,
            max_buffering: self.max_buffering,
            token_expiration: self.token_expiration,
            token_provider: self.token_provider.map(|f| {
                Arc::new(PyTokenProvider::new(f, event_loop)) as Arc<dyn fal_realtime::TokenProvider>
            }),
            decoder,
            ..Default::default()
        }
    }

    fn ws(self, event_loop: Option<Py<PyAny>>) -> WsOptions {
        WsOptions {
            path: self.path,
            use_jwt: self.use_jwt,
            max_buffering: self.max_buffering,
            token_expiration: self.token_expiration,
            token_provider: self.token_provider.map(|f| {
                Arc::new(PyTokenProvider::new(f, event_loop)) as Arc<dyn fal_realtime::TokenProvider>
            }),
        }
    }
}

fn expiration(v: Option<f64>) -> PyResult<Option<std::time::Duration>> {
    v.map(|s| util::seconds("token_expiration", s)).transpose()
}

#[cfg(unix)]
fn session_fd(s: &RealtimeSession) -> Option<i32> {
    s.raw_fd()
}

#[cfg(not(unix))]
fn session_fd(_: &RealtimeSession) -> Option<i32> {
    None
}

#[cfg(unix)]
fn ws_fd(c: &CoreWs) -> Option<i32> {
    c.raw_fd()
}

#[cfg(not(unix))]
fn ws_fd(_: &CoreWs) -> Option<i32> {
    None
}

fn realtime_halves(s: RealtimeSession) -> Halves {
    let (tx, rx) = s.split();
    Halves::new(Tx::Realtime(tx), Rx::Realtime(rx, false))
}

fn ws_halves(c: CoreWs) -> Halves {
    let (tx, rx) = c.split();
    Halves::new(Tx::Ws(tx), Rx::Ws(rx))
}

impl Client {
    /// How often an asyncio connection with a pending `recv` lets its runtime
    /// run timers (keepalive pings, the dead-peer check, the deadline of an
    /// ending session's close handshake), which the event loop would not
    /// otherwise wake it for. Without keepalive, once a second: a session
    /// that ends while the server stays silent then still finishes.
    fn heartbeat(&self) -> Option<std::time::Duration> {
        let c = self.inner.config();
        let shortest = match (c.ping_interval, c.ping_timeout) {
            (Some(i), Some(t)) => i.min(t),
            (Some(i), None) => i,
            (None, _) => return Some(std::time::Duration::from_secs(1)),
        };
        Some((shortest / 4).max(std::time::Duration::from_millis(5)))
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (key=None, run_host=None, rest_url=None, ca_file=None, allow_insecure_ws=false, open_timeout=None, max_message_size=None, ping_interval=Some(20.0), ping_timeout=Some(20.0), server_side=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        key: Option<String>,
        run_host: Option<String>,
        rest_url: Option<String>,
        ca_file: Option<std::path::PathBuf>,
        allow_insecure_ws: bool,
        open_timeout: Option<f64>,
        max_message_size: Option<usize>,
        ping_interval: Option<f64>,
        ping_timeout: Option<f64>,
        server_side: bool,
    ) -> PyResult<Self> {
        let mut cfg = ClientConfig::from_env();
        if let Some(k) = key {
            cfg.credentials = Some(Credentials::key(k));
        }
        if let Some(h) = run_host {
            cfg.run_host = h;
        }
        if let Some(r) = rest_url {
            cfg.rest_url = r;
        }
        cfg.extra_ca_file = ca_file;
        cfg.allow_insecure = allow_insecure_ws;
        if let Some(t) = open_timeout {
            cfg.open_timeout = util::seconds("open_timeout", t)?;
        }
        cfg.max_frame_size = max_message_size;
        cfg.ping_interval = ping_interval
            .map(|s| util::seconds("ping_interval", s))
            .transpose()?;
        cfg.ping_timeout = ping_timeout
            .map(|s| util::seconds("ping_timeout", s))
            .transpose()?;
        cfg.server_side = server_side;
        let inner = fal_realtime::Client::new(cfg).map_err(|e| {
            // Name the Python argument.
            let msg = e.message().replace(
                "set allow_insecure to use it",
                "pass allow_insecure_ws=True to use it",
            );
            errors::to_py_attach(&fal_realtime::Error::new(e.kind(), msg))
        })?;
        Ok(Client { inner })
    }

    /// Whether credentials are configured (from `key` or the environment).
    #[getter]
    fn has_credentials(&self) -> bool {
        self.inner.config().credentials.is_some()
    }

    /// The run host in use.
    #[getter]
    fn run_host(&self) -> String {
        self.inner.config().run_host.clone()
    }

    /// Whether the host was marked server-side (`server_side=True`).
    #[getter]
    fn server_side(&self) -> bool {
        self.inner.config().server_side
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Client(run_host={:?}, rest_url={:?}, credentials={})",
            c.run_host,
            c.rest_url,
            if c.credentials.is_some() { "set" } else { "none" }
        )
    }

    /// Blocking pull-style realtime connection.
    #[pyo3(signature = (app, *, path=None, use_jwt=true, max_buffering=None, token_expiration=None, token_provider=None, encode_message=None, decode_message=None))]
    #[allow(clippy::too_many_arguments)]
    fn realtime(
        &self,
        py: Python<'_>,
        app: &str,
        path: Option<String>,
        use_jwt: bool,
        max_buffering: Option<&Bound<'_, PyAny>>,
        token_expiration: Option<f64>,
        token_provider: Option<Py<PyAny>>,
        encode_message: Option<Py<PyAny>>,
        decode_message: Option<Py<PyAny>>,
    ) -> PyResult<RealtimeConnection> {
        let opts = Opts {
            path,
            use_jwt,
            max_buffering: max_buffering_arg(max_buffering)?,
            token_expiration: expiration(token_expiration)?,
            token_provider,
            decode_message,
        }
        .realtime(None);
        let rt = sync::new_runtime()?;
        let client = &self.inner;
        let session = util::block_on(py, &rt, client.connect(app, opts), None, First::Wait)?
            .expect("no deadline")
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(RealtimeConnection {
            core: SyncCore::new(rt, realtime_halves(session), encode_message),
        })
    }

    /// Blocking raw WebSocket.
    #[pyo3(signature = (app, *, path=None, use_jwt=true, max_buffering=None, token_expiration=None, token_provider=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_connect(
        &self,
        py: Python<'_>,
        app: &str,
        path: Option<String>,
        use_jwt: bool,
        max_buffering: Option<&Bound<'_, PyAny>>,
        token_expiration: Option<f64>,
        token_provider: Option<Py<PyAny>>,
    ) -> PyResult<WsConnection> {
        let opts = Opts {
            path,
            use_jwt,
            max_buffering: max_buffering_arg(max_buffering)?,
            token_expiration: expiration(token_expiration)?,
            token_provider,
            decode_message: None,
        }
        .ws(None);
        let rt = sync::new_runtime()?;
        let client = &self.inner;
        let ws = util::block_on(py, &rt, client.ws_connect(app, opts), None, First::Wait)?
            .expect("no deadline")
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(WsConnection {
            core: SyncCore::new(rt, ws_halves(ws), None),
        })
    }

    /// asyncio pull-style realtime connection: an awaitable of the native connection.
    #[pyo3(signature = (app, *, path=None, use_jwt=true, max_buffering=None, token_expiration=None, token_provider=None, encode_message=None, decode_message=None))]
    #[allow(clippy::too_many_arguments)]
    fn realtime_async<'py>(
        &self,
        py: Python<'py>,
        app: String,
        path: Option<String>,
        use_jwt: bool,
        max_buffering: Option<&Bound<'py, PyAny>>,
        token_expiration: Option<f64>,
        token_provider: Option<Py<PyAny>>,
        encode_message: Option<Py<PyAny>>,
        decode_message: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lp = util::running_loop(py)?.unbind();
        let opts = Opts {
            path,
            use_jwt,
            max_buffering: max_buffering_arg(max_buffering)?,
            token_expiration: expiration(token_expiration)?,
            token_provider,
            decode_message,
        }
        .realtime(Some(lp));
        let client = self.inner.clone();
        let heartbeat = self.heartbeat();
        aio::open(
            py,
            move |driver| -> BoxFut<fal_realtime::Result<RealtimeSession>> {
                Box::pin(async move { client.connect_host_polled(&driver, &app, opts).await })
            },
            move |py, rt, s: RealtimeSession, lp| {
                let fd = aio::require_fd(session_fd(&s)).map_err(|e| errors::to_py(py, &e))?;
                let conn =
                    AsyncConnection::new(rt, realtime_halves(s), fd, lp, encode_message, false, heartbeat);
                Ok(Bound::new(py, conn)?.into_any())
            },
        )
    }

    /// asyncio raw WebSocket: an awaitable of the native connection.
    #[pyo3(signature = (app, *, path=None, use_jwt=true, max_buffering=None, token_expiration=None, token_provider=None))]
    #[allow(clippy::too_many_arguments)]
    fn ws_connect_async<'py>(
        &self,
        py: Python<'py>,
        app: String,
        path: Option<String>,
        use_jwt: bool,
        max_buffering: Option<&Bound<'py, PyAny>>,
        token_expiration: Option<f64>,
        token_provider: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let lp = util::running_loop(py)?.unbind();
        let opts = Opts {
            path,
            use_jwt,
            max_buffering: max_buffering_arg(max_buffering)?,
            token_expiration: expiration(token_expiration)?,
            token_provider,
            decode_message: None,
        }
        .ws(Some(lp));
        let client = self.inner.clone();
        let heartbeat = self.heartbeat();
        aio::open(
            py,
            move |driver| -> BoxFut<fal_realtime::Result<CoreWs>> {
                Box::pin(async move { client.ws_connect_host_polled(&driver, &app, opts).await })
            },
            move |py, rt, c: CoreWs, lp| {
                let fd = aio::require_fd(ws_fd(&c)).map_err(|e| errors::to_py(py, &e))?;
                let conn = AsyncConnection::new(rt, ws_halves(c), fd, lp, None, true, heartbeat);
                Ok(Bound::new(py, conn)?.into_any())
            },
        )
    }

    /// Callback-style realtime connection (lazy: connects on the first send).
    #[pyo3(signature = (app, *, on_result, on_error=None, on_state=None, connection_key=None, throttle_interval=0.128, max_buffering=None, path=None, use_jwt=true, token_provider=None, token_expiration=None, encode_message=None, decode_message=None, client_only=false))]
    #[allow(clippy::too_many_arguments)]
    fn connect(
        &self,
        py: Python<'_>,
        app: &str,
        on_result: Py<PyAny>,
        on_error: Option<Py<PyAny>>,
        on_state: Option<Py<PyAny>>,
        connection_key: Option<String>,
        throttle_interval: Option<f64>,
        max_buffering: Option<&Bound<'_, PyAny>>,
        path: Option<String>,
        use_jwt: bool,
        token_provider: Option<Py<PyAny>>,
        token_expiration: Option<f64>,
        encode_message: Option<Py<PyAny>>,
        decode_message: Option<Py<PyAny>>,
        client_only: bool,
    ) -> PyResult<CallbackConnection> {
        let event_loop = util::running_loop_opt(py);
        let mut opts = Opts {
            path,
            use_jwt,
            max_buffering: max_buffering_arg(max_buffering)?,
            token_expiration: expiration(token_expiration)?,
            token_provider,
            decode_message,
        }
        .realtime(event_loop);
        opts.connection_key = connection_key;
        opts.client_only = client_only;
        opts.throttle_interval = util::seconds("throttle_interval", throttle_interval.unwrap_or(0.0))?;
        let (slot, handler) = callback::handler(py, on_result, on_error, on_state)?;
        let conn = self
            .inner
            .realtime_dyn(app, opts, Arc::new(handler))
            .map_err(|e| errors::to_py(py, &e))?;
        Ok(CallbackConnection {
            conn,
            slot,
            encode: encode_message,
            shut: Default::default(),
        })
    }
}

fn max_buffering_arg(v: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    max_buffering(v)
}
