//! Opening a load connection's TCP stream: from the system's choice of
//! source address, or bound first to one of the plan's source addresses
//! (`--source-addr`), so a run can go wider than one address's ephemeral
//! ports. The HTTP clients (HTTP/1.1 here, others alike) open their streams
//! through [`tcp`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use volley_stats::ErrorClass;

/// Connects to `addr` within `timeout`, from `source` if given (port chosen
/// by the system), with TCP_NODELAY set: requests are small and latency
/// matters. Errors are classed as connect errors.
pub async fn tcp(addr: SocketAddr, source: Option<IpAddr>, timeout: Duration) -> Result<TcpStream, ErrorClass> {
    let connect = async {
        match source {
            None => TcpStream::connect(addr).await,
            Some(ip) => {
                let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await
            }
        }
    };
    let stream = match tokio::time::timeout(timeout, connect).await {
        Err(_) => return Err(ErrorClass::ConnectTimeout),
        Ok(Err(e)) => return Err(connect_error(&e)),
        Ok(Ok(s)) => s,
    };
    stream.set_nodelay(true).map_err(|e| ErrorClass::of_io(&e))?;
    Ok(stream)
}

/// The class of an error met while connecting (both engines): refused, timed
/// out, or another connect error.
pub(crate) fn connect_error(e: &std::io::Error) -> ErrorClass {
    match ErrorClass::of_io(e) {
        ErrorClass::ConnectRefused => ErrorClass::ConnectRefused,
        ErrorClass::Timeout => ErrorClass::ConnectTimeout,
        _ => ErrorClass::Connect,
    }
}

/// Checks that every address is this host's (binding a socket to the first
/// and last of each entry) before a run starts: the error names the address.
pub fn check_sources(sources: &volley_proto::source::SourceAddrs) -> Result<(), String> {
    for ip in sources.ends() {
        std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("source address {ip} cannot be used on this agent's host: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_to_the_source_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        let stream = tcp(addr, Some(source), Duration::from_secs(5)).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), source);
        assert!(stream.nodelay().unwrap());
        assert!(check_sources(&"127.0.0.2-127.0.0.9,::1".parse().unwrap()).is_ok());
        let err = check_sources(&"127.0.0.2,192.0.2.1".parse().unwrap()).unwrap_err();
        assert!(err.starts_with("source address 192.0.2.1 cannot be used"), "{err}");
    }
}
