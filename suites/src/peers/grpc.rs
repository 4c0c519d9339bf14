//! kaspec's gRPC server (`kaspec serve grpc`): a tonic echo service with
//! an optional HTTP/2 keep-alive of its own.

use std::net::SocketAddrV4;
use std::time::Duration;

/// The echo service of fixtures/grpc/kaspec.proto, shared with the client.
pub mod proto {
    tonic::include_proto!("kaspec");
}

use proto::echo_server::{Echo, EchoServer};
use proto::Text;

#[derive(Default)]
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn say(
        &self,
        request: tonic::Request<Text>,
    ) -> std::result::Result<tonic::Response<Text>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }

    type WatchStream = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = std::result::Result<Text, tonic::Status>> + Send>,
    >;

    async fn watch(
        &self,
        request: tonic::Request<Text>,
    ) -> std::result::Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        use futures_util::StreamExt;
        let first = futures_util::stream::once(std::future::ready(Ok(request.into_inner())));
        Ok(tonic::Response::new(Box::pin(
            first.chain(futures_util::stream::pending()),
        )))
    }
}

/// Our tonic server, with HTTP/2 keep-alive when both values are given.
pub fn serve(listen: SocketAddrV4, keepalive: Option<(Duration, Duration)>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut builder = tonic::transport::Server::builder();
        if let Some((interval, timeout)) = keepalive {
            builder = builder
                .http2_keepalive_interval(Some(interval))
                .http2_keepalive_timeout(Some(timeout));
        }
        println!("kaspec-grpc (tonic) listening on {listen}, keep-alive {keepalive:?}");
        builder
            .add_service(EchoServer::new(EchoService))
            .serve(listen.into())
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
}
