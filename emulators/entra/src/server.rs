//! The HTTPS listener and the request pipeline every call goes through: route → fault injection →
//! authentication → denial → throttling → handler → commit-then-fail faults → request log.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::FaultKind;
use crate::http::{LogCtx, Req, Resp};
use crate::log::RequestRecord;
use crate::model::State;
use crate::route::{Route, route};
use crate::schema::{self, ViolationKind};
use crate::shared::Shared;
use crate::throttle::Admission;
use crate::util::{fmt_ts, new_guid};
use crate::{control, graph, identity};

const MAX_BODY: usize = 8 * 1024 * 1024;

impl Shared {
    /// Handles one request (control API, identity platform or Graph).
    pub(crate) async fn handle(self: &Arc<Self>, req: Req) -> Resp {
        if req.path.starts_with("/_emulator") {
            return control::handle(self, &req);
        }
        let r = route(&req.path);
        let fault = self.pick_fault(&req.method, &r.template);
        if let Some(FaultKind::Delay { ms }) = fault {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        self.process(&req, &r, fault, false)
    }

    /// Runs a routed request through faults, auth, throttling and the handler, and logs it.
    pub(crate) fn process(
        self: &Arc<Self>,
        req: &Req,
        r: &Route,
        fault: Option<FaultKind>,
        in_batch: bool,
    ) -> Resp {
        let is_graph = r.template.starts_with("/v1.0");
        let request_id = new_guid();
        let client_request_id = req
            .header("client-request-id")
            .map(str::to_string)
            .unwrap_or_else(|| request_id.clone());
        let mut ctx = LogCtx::default();
        let fault_name = fault.as_ref().map(|f| format!("{f:?}"));
        let mut resp = match &fault {
            Some(FaultKind::Reset) => Resp::dropped(),
            Some(FaultKind::Status { status }) => {
                if is_graph {
                    graph::error_resp(
                        *status,
                        fault_code(*status),
                        "Injected fault.",
                        None,
                        &request_id,
                        &client_request_id,
                    )
                } else {
                    identity::transient_error(*status)
                }
            }
            _ => {
                let resp = if is_graph {
                    self.graph_pipeline(req, r, &request_id, &client_request_id, &mut ctx)
                } else {
                    identity::handle(self, req, r, &mut ctx)
                };
                match &fault {
                    Some(FaultKind::CommitThenStatus { status }) => {
                        if is_graph {
                            graph::error_resp(
                                *status,
                                fault_code(*status),
                                "Injected fault after the write was committed.",
                                None,
                                &request_id,
                                &client_request_id,
                            )
                        } else {
                            identity::transient_error(*status)
                        }
                    }
                    Some(FaultKind::CommitThenReset) => Resp::dropped(),
                    _ => resp,
                }
            }
        };
        if is_graph && !resp.drop_connection {
            resp.headers.push(("request-id".into(), request_id.clone()));
            resp.headers
                .push(("client-request-id".into(), client_request_id.clone()));
        }
        let mut st = self.state.lock();
        let time = fmt_ts(st.now());
        st.log.push(RequestRecord {
            seq: 0,
            time,
            method: req.method.clone(),
            path: req.path.clone(),
            template: r.template.clone(),
            status: resp.status,
            tenant_id: ctx.tenant_id,
            client_id: ctx.client_id,
            in_batch,
            fault: fault_name,
        });
        resp
    }

    fn graph_pipeline(
        self: &Arc<Self>,
        req: &Req,
        r: &Route,
        request_id: &str,
        client_request_id: &str,
        ctx: &mut LogCtx,
    ) -> Resp {
        let err = |e: graph::GErr| e.into_resp(request_id, client_request_id);
        let caller = {
            let st = self.state.lock();
            match graph::authenticate(&st, &self.key, req) {
                Ok(c) => c,
                Err(e) => return err(e),
            }
        };
        ctx.tenant_id = Some(caller.tenant_id.clone());
        ctx.client_id = Some(caller.app_id.clone());
        if r.template == "/v1.0/$batch" && req.method == "POST" {
            let run = |inner: &Req, rt: &Route| {
                // Delays are ignored inside a batch: the batch is answered as one response.
                let fault = self
                    .pick_fault(&inner.method, &rt.template)
                    .filter(|f| !matches!(f, FaultKind::Delay { .. }));
                self.process(inner, rt, fault, true)
            };
            return graph::batch(req, request_id, client_request_id, &run);
        }
        let mut st = self.state.lock();
        if st.switches.deny.iter().any(|d| {
            d.path_template == r.template
                && d.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
        }) {
            return err(graph::GErr::new(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            ));
        }
        let (ru, write) = crate::throttle::cost(
            &req.method,
            &r.template,
            req.query("$select").is_some(),
            req.query("$expand").is_some(),
        );
        let user_count = st
            .tenants
            .get(&caller.tenant_id)
            .map(|t| t.user_count)
            .unwrap_or(0);
        let mode = st.switches.throttling.clone();
        let admission = st.throttle.admit(
            &mode,
            &caller.app_id,
            &caller.tenant_id,
            user_count,
            ru,
            write,
        );
        let near = match admission {
            Admission::Throttled { retry_after, scope } => {
                let secs = retry_after.as_secs_f64();
                let retry = if secs.fract() == 0.0 {
                    format!("{}", secs as u64)
                } else {
                    format!("{secs:.3}")
                };
                return err(graph::GErr::new(
                    429,
                    "TooManyRequests",
                    "Please retry again later.",
                ))
                .with_header("Retry-After", retry)
                .with_header("x-ms-throttle-scope", scope)
                .with_header("x-ms-throttle-limit-percentage", "1.0");
            }
            Admission::Allowed { near_limit } => near_limit,
        };
        if let Some(e) = check_request_schema(&mut st, req, r) {
            return err(e);
        }
        let base = self.base.clone();
        let mut resp = match graph::dispatch(&mut st, &caller, req, r, &base) {
            Ok(resp) => resp,
            Err(e) => err(e),
        };
        if st.switches.schema_contract
            && (200..300).contains(&resp.status)
            && let Ok(body) = serde_json::from_slice::<serde_json::Value>(&resp.body)
        {
            for v in schema::check_response(&r.template, &body) {
                record_violation(&mut st, req, "response", &v);
            }
        }
        resp.headers
            .push(("x-ms-resource-unit".into(), ru.to_string()));
        // Near the limit only the percentage is sent; `x-ms-throttle-scope` is documented for
        // throttled responses only.
        if let Some((pct, _scope)) = near {
            resp.headers
                .push(("x-ms-throttle-limit-percentage".into(), format!("{pct:.1}")));
        }
        resp
    }
}

fn fault_code(status: u16) -> &'static str {
    match status {
        429 => "TooManyRequests",
        500 => "UnknownError",
        502 => "BadGateway",
        503 => "serviceNotAvailable",
        504 => "GatewayTimeout",
        _ => "InjectedFault",
    }
}

/// Marker error: makes hyper drop the connection without a response.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

async fn to_req(req: Request<Incoming>) -> Result<Req, Resp> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Resp::json(413, &json!({"error": "request body too large"}))),
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    Ok(Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
    })
}

fn to_response(resp: Resp) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(resp.body));
    *out.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK);
    for (k, v) in resp.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            out.headers_mut().append(k, v);
        }
    }
    out
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            res = listener.accept() => match res {
                Ok(c) => c,
                Err(_) => continue,
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move {
                    let req = match to_req(req).await {
                        Ok(r) => r,
                        Err(resp) => return Ok::<_, DropConnection>(to_response(resp)),
                    };
                    let resp = shared.handle(req).await;
                    if resp.drop_connection {
                        return Err(DropConnection);
                    }
                    Ok(to_response(resp))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                _ = conn => {}
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

/// Checks a Graph request body against the schema: unknown properties of non-open complex types
/// are refused as Graph refuses them; with the `schemaContract` switch every violation is
/// recorded and refused.
fn check_request_schema(st: &mut State, req: &Req, r: &Route) -> Option<graph::GErr> {
    if !matches!(req.method.as_str(), "POST" | "PATCH" | "PUT") || req.body.is_empty() {
        return None;
    }
    let body = req.json()?;
    let violations = schema::check_request(&r.template, &body);
    if st.switches.schema_contract && !violations.is_empty() {
        for v in &violations {
            record_violation(st, req, "request", v);
        }
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Some(graph::GErr::new(
            400,
            "SchemaContractViolation",
            format!(
                "The request body disagrees with Microsoft Graph's v1.0 schema: {}",
                list.join("; ")
            ),
        ));
    }
    violations.iter().find_map(|v| match &v.kind {
        ViolationKind::Unknown { type_name, open: false } => Some(graph::GErr::new(
            400,
            "Request_BadRequest",
            format!(
                "The property '{}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                v.path.rsplit(['.', ']']).next().unwrap_or(&v.path)
            ),
        )),
        _ => None,
    })
}

fn record_violation(st: &mut State, req: &Req, direction: &str, v: &schema::Violation) {
    st.contract_violations.push(json!({
        "method": req.method,
        "path": req.path,
        "direction": direction,
        "violation": v.to_string(),
    }));
}
