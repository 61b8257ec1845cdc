//! `Stats`: a snapshot of a connection's counters.

use pyo3::prelude::*;

/// A snapshot of a connection's counters.
#[pyclass(frozen, get_all, module = "fal_realtime", name = "Stats")]
#[derive(Clone)]
pub struct PyStats {
    /// Data frames written to the socket.
    pub frames_sent: u64,
    /// Payload bytes written.
    pub bytes_sent: u64,
    /// Data frames read from the socket (results, control and error frames).
    pub frames_received: u64,
    /// Payload bytes read.
    pub bytes_received: u64,
    /// Results delivered.
    pub results: u64,
    /// Errors reported.
    pub errors: u64,
    /// Successful connection opens.
    pub connects: u64,
    /// Opens after the first one.
    pub reconnects: u64,
    /// Tokens fetched (initial and refreshes).
    pub token_fetches: u64,
    /// Inputs replaced by a newer one before they were sent.
    pub inputs_replaced: u64,
    /// The last processing time (seconds) the server reported in a timings message.
    pub last_server_timing: Option<f64>,
    /// Keepalive pings sent.
    pub pings_sent: u64,
    /// Pongs received (answers to keepalive pings).
    pub pongs_received: u64,
    /// Inputs dropped because the connection is `client_only` on a `server_side` client.
    pub inputs_dropped_client_only: u64,
}

impl From<fal_realtime::Stats> for PyStats {
    fn from(s: fal_realtime::Stats) -> Self {
        PyStats {
            frames_sent: s.frames_sent,
            bytes_sent: s.bytes_sent,
            frames_received: s.frames_received,
            bytes_received: s.bytes_received,
            results: s.results,
            errors: s.errors,
            connects: s.connects,
            reconnects: s.reconnects,
            token_fetches: s.token_fetches,
            inputs_replaced: s.inputs_replaced,
            last_server_timing: s.last_server_timing.map(|d| d.as_secs_f64()),
            pings_sent: s.pings_sent,
            pongs_received: s.pongs_received,
            inputs_dropped_client_only: s.inputs_dropped_client_only,
        }
    }
}

#[pymethods]
impl PyStats {
    fn __repr__(&self) -> String {
        format!(
            "Stats(frames_sent={}, bytes_sent={}, frames_received={}, bytes_received={}, results={}, \
             errors={}, connects={}, reconnects={}, token_fetches={}, inputs_replaced={}, last_server_timing={}, pings_sent={}, pongs_received={}, \
             inputs_dropped_client_only={})",
            self.frames_sent,
            self.bytes_sent,
            self.frames_received,
            self.bytes_received,
            self.results,
            self.errors,
            self.connects,
            self.reconnects,
            self.token_fetches,
            self.inputs_replaced,
            match self.last_server_timing {
                Some(t) => format!("{t}"),
                None => "None".into(),
            },
            self.pings_sent,
            self.pongs_received,
            self.inputs_dropped_client_only,
        )
    }

    /// The counters as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let d = pyo3::types::PyDict::new(py);
        d.set_item("frames_sent", self.frames_sent)?;
        d.set_item("bytes_sent", self.bytes_sent)?;
        d.set_item("frames_received", self.frames_received)?;
        d.set_item("bytes_received", self.bytes_received)?;
        d.set_item("results", self.results)?;
        d.set_item("errors", self.errors)?;
        d.set_item("connects", self.connects)?;
        d.set_item("reconnects", self.reconnects)?;
        d.set_item("token_fetches", self.token_fetches)?;
        d.set_item("inputs_replaced", self.inputs_replaced)?;
        d.set_item("last_server_timing", self.last_server_timing)?;
        d.set_item("pings_sent", self.pings_sent)?;
        d.set_item("pongs_received", self.pongs_received)?;
        d.set_item("inputs_dropped_client_only", self.inputs_dropped_client_only)?;
        Ok(d)
    }
}
