//! Async client of the node admin API (plain HTTP, bearer token).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::*;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}: {reason:?}: {message}")]
    Api {
        url: String,
        status: u16,
        reason: ErrorReason,
        message: String,
    },
    #[error("{url} answered {status} with an unreadable body: {body}")]
    Unexpected {
        url: String,
        status: u16,
        body: String,
    },
}

impl ClientError {
    /// The API's machine-readable reason, if the node answered with one.
    pub fn reason(&self) -> Option<ErrorReason> {
        match self {
            ClientError::Api { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// `addr` is the node's admin `ip:port`.
    pub fn new(http: reqwest::Client, addr: &str, token: &str) -> AdminClient {
        AdminClient {
            base: format!("http://{addr}"),
            token: token.to_string(),
            http,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| ClientError::Unexpected {
                url,
                status,
                body: format!("{e}: {}", String::from_utf8_lossy(&body)),
            });
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => Err(ClientError::Api {
                url,
                status,
                reason: e.reason,
                message: e.error,
            }),
            Err(_) => Err(ClientError::Unexpected {
                url,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), url).await
    }

    async fn with_body<B: Serialize, T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.request(method, &url).json(body), url)
            .await
    }

    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        self.get("/v1/status").await
    }

    /// Split-brain evidence: windows of writes accepted as owner.
    pub async fn accepted_writes(&self) -> Result<AcceptedWrites, ClientError> {
        self.get("/v1/debug/accepted-writes").await
    }

    pub async fn placement(&self) -> Result<PlacementInstall, ClientError> {
        self.get("/v1/placement").await
    }

    pub async fn put_placement(
        &self,
        body: &PlacementInstall,
    ) -> Result<PlacementAccepted, ClientError> {
        self.with_body(reqwest::Method::PUT, "/v1/placement", body)
            .await
    }

    pub async fn start_pull(&self, body: &StartPull) -> Result<PullStatus, ClientError> {
        self.with_body(reqwest::Method::POST, "/v1/pulls", body)
            .await
    }

    pub async fn pull(&self, migration_uid: &str) -> Result<PullStatus, ClientError> {
        self.get(&format!("/v1/pulls/{migration_uid}")).await
    }

    pub async fn pulls(&self) -> Result<Vec<PullStatus>, ClientError> {
        self.get("/v1/pulls").await
    }

    pub async fn cancel_pull(&self, caller: &Caller) -> Result<PullStatus, ClientError> {
        let path = format!("/v1/pulls/{}", caller.migration_uid);
        self.with_body(reqwest::Method::DELETE, &path, caller).await
    }

    pub async fn fence(&self, body: &FenceRequest) -> Result<FenceResponse, ClientError> {
        self.with_body(reqwest::Method::POST, "/v1/fence", body)
            .await
    }

    pub async fn unfence(&self, body: &UnfenceRequest) -> Result<Done, ClientError> {
        self.with_body(reqwest::Method::POST, "/v1/unfence", body)
            .await
    }

    pub async fn drop_ranges(&self, body: &DropRequest) -> Result<Done, ClientError> {
        self.with_body(reqwest::Method::POST, "/v1/drop", body)
            .await
    }

    pub async fn checksum(&self, body: &ChecksumRequest) -> Result<ChecksumResponse, ClientError> {
        self.with_body(reqwest::Method::POST, "/v1/checksum", body)
            .await
    }

    pub async fn open_snapshot(&self, body: &OpenSnapshot) -> Result<SnapshotOpened, ClientError> {
        self.with_body(reqwest::Method::POST, "/v1/snapshots", body)
            .await
    }

    /// A binary body from a node-to-node endpoint (`path` includes the query string).
    pub async fn get_raw(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| ClientError::Http {
            url: url.clone(),
            source,
        })?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => Err(ClientError::Api {
                url,
                status,
                reason: e.reason,
                message: e.error,
            }),
            Err(_) => Err(ClientError::Unexpected {
                url,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            }),
        }
    }

    pub async fn delete_snapshot(&self, caller: &Caller) -> Result<Done, ClientError> {
        let path = format!("/v1/snapshots/{}", caller.migration_uid);
        self.with_body(reqwest::Method::DELETE, &path, caller).await
    }
}
