//! Connecting to an agent and asking it to describe itself (several times,
//! to measure its link), with a typed error for every way that can fail.

use std::time::{Duration, Instant};

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use volley_proto::agent_client::AgentClient;
use volley_proto::{AgentInfo, DescribeRequest, PROTOCOL_VERSION};

use super::link::{Link, SAMPLES};
use crate::config::ChannelConfig;

/// How long connecting to and describing one agent may take. Nothing is
/// known of the link yet, so this is generous: a TCP handshake that loses its
/// first SYN alone takes over a second, and a TLS handshake and the Describe
/// calls add several round trips.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive pings, a backstop only: the merge loop judges an agent's
/// silence by its measured link, so pings must never give up sooner than
/// that would on any link the connect timeout admits.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Adds the shared token to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A client of one agent, with the token on every call.
pub type Client = AgentClient<InterceptedService<Channel, Bearer>>;

/// Why an agent cannot be used. Each message reads after "agent ADDRESS".
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid address")]
    Address(#[source] tonic::transport::Error),
    #[error("TLS settings")]
    Tls(#[source] tonic::transport::Error),
    #[error("--token: not a valid header value")]
    Token,
    #[error("unreachable")]
    Unreachable(#[source] tonic::transport::Error),
    #[error("refused the controller's token (give the agents' secret with --token or VOLLEY_TOKEN): {0}")]
    Unauthenticated(String),
    #[error(
        "does not answer as a Volley agent (a TLS agent needs --tls-ca; mutual TLS also --tls-cert and --tls-key): {0}"
    )]
    NotAnAgent(String),
    #[error("the connection failed while describing the agent: {0}")]
    Link(String),
    #[error("did not answer within {CONNECT_TIMEOUT:?}")]
    Timeout,
    #[error("speaks protocol version {theirs} but this controller speaks {PROTOCOL_VERSION} (agent version {version})")]
    Protocol { theirs: u32, version: String },
    #[error("is busy with another run")]
    Busy,
}

impl ConnectError {
    /// The error and its causes on one line, each cause once: tonic's
    /// transport errors say little at the top ("transport error") and repeat
    /// themselves lower down.
    pub fn one_line(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        // What to fix, when the cause says it.
        if out.contains("certificate") || out.contains("UnknownIssuer") {
            out.push_str(" (check --tls-ca, --tls-domain, and --tls-cert/--tls-key for mutual TLS)");
        }
        out
    }
}

/// A connected, described agent.
pub struct Connected {
    pub address: String,
    pub client: Client,
    pub info: AgentInfo,
    /// Its link, measured by [`SAMPLES`] Describe calls.
    pub link: Link,
}

/// A gRPC status on one line with its causes, each once: a transport
/// failure's message alone ("http2 error", "transport error") names no cause.
pub fn status_line(s: &tonic::Status) -> String {
    let mut out = match s.code() {
        tonic::Code::DeadlineExceeded => format!("no answer in time ({})", s.message()),
        tonic::Code::Unauthenticated => format!("refused the controller's token: {}", s.message()),
        _ => s.message().to_owned(),
    };
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Whether `s` comes from the connection rather than from the agent's answer.
fn is_transport(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown)
        && std::error::Error::source(s).is_some()
}

/// Connects to the agent at `address` and checks it can take a run.
pub async fn connect(address: String, channel: ChannelConfig) -> Result<Connected, ConnectError> {
    let scheme = if channel.tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(ConnectError::Address)?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // HTTP/2 pings notice a silent peer even when no RPC is in flight.
        .http2_keep_alive_interval(KEEPALIVE_EVERY)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(tls) = channel.tls.clone() {
        endpoint = endpoint.tls_config(tls).map_err(ConnectError::Tls)?;
    }
    let bearer = match &channel.token {
        // A token that cannot travel in a header is refused before any call.
        Some(t) => Some(format!("Bearer {}", t.expose()).parse().map_err(|_| ConnectError::Token)?),
        None => None,
    };
    let attempt = async {
        let transport = endpoint.connect().await.map_err(ConnectError::Unreachable)?;
        let mut client = AgentClient::with_interceptor(transport, Bearer(bearer));
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut info = None;
        for _ in 0..SAMPLES {
            let asked = Instant::now();
            let answer = client.describe(DescribeRequest {}).await.map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => ConnectError::Unauthenticated(s.message().to_owned()),
                _ if is_transport(&s) => ConnectError::Link(status_line(&s)),
                _ => ConnectError::NotAnAgent(status_line(&s)),
            })?;
            samples.push(asked.elapsed());
            info = Some(answer.into_inner());
        }
        // SAMPLES is not zero, so the loop ran and set it.
        let info = info.expect("at least one Describe");
        Ok::<_, ConnectError>((client, info, Link::from_samples(&samples)))
    };
    let (client, info, link) =
        tokio::time::timeout(CONNECT_TIMEOUT, attempt).await.map_err(|_| ConnectError::Timeout)??;
    if info.protocol_version != PROTOCOL_VERSION {
        return Err(ConnectError::Protocol { theirs: info.protocol_version, version: info.version });
    }
    if info.busy {
        return Err(ConnectError::Busy);
    }
    Ok(Connected { address, client, info, link })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_agent_says_why_on_one_line_each_cause_once() {
        // A port that was just free: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let Err(e) = connect(addr.to_string(), ChannelConfig::default()).await else {
            panic!("nothing listens on {addr}");
        };
        assert!(matches!(e, ConnectError::Unreachable(_)), "{e:?}");
        let line = e.one_line();
        assert!(line.starts_with("unreachable: "), "{line}");
        assert!(!line.contains('\n'), "{line}");
        let refused = "Connection refused";
        assert_eq!(line.matches(refused).count(), 1, "the cause is named once: {line}");
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_a_header_is_refused_before_connecting() {
        let channel = ChannelConfig { token: volley_proto::auth::Token::new("bad\ntoken"), ..ChannelConfig::default() };
        let e = connect("127.0.0.1:1".into(), channel).await.err().unwrap();
        assert_eq!(e.one_line(), "--token: not a valid header value");
    }
}
