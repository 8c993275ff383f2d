//! The `ProxyHttp` phases: pick a healthy upstream, with timeouts on every upstream connection.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::prelude::{HttpPeer, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::config::UpstreamsConfig;
use crate::metrics::REQUESTS;

pub struct Edge {
    lb: Arc<LoadBalancer<RoundRobin>>,
    upstreams: UpstreamsConfig,
}

impl Edge {
    pub fn new(lb: Arc<LoadBalancer<RoundRobin>>, upstreams: UpstreamsConfig) -> Self {
        Self { lb, upstreams }
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let backend = self
            .lb
            .select(b"", 256)
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no healthy upstream"))?;
        let mut peer = HttpPeer::new(backend, false, String::new());
        peer.options.connection_timeout = Some(self.upstreams.connect_timeout);
        peer.options.total_connection_timeout = Some(self.upstreams.connect_timeout * 2);
        peer.options.read_timeout = Some(self.upstreams.read_timeout);
        peer.options.write_timeout = Some(self.upstreams.read_timeout);
        peer.options.idle_timeout = Some(self.upstreams.idle_timeout);
        Ok(Box::new(peer))
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, _ctx: &mut ()) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        REQUESTS.with_label_values(&[&status.to_string()]).inc();
    }
}
