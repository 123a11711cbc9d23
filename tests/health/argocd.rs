//! Argo CD's health assessment of our kinds: `deploy/argocd/health.lua` run by a real Lua
//! interpreter the way Argo CD runs it (argoproj/argo-cd `util/lua/lua.go`), behind the one rule
//! Argo CD applies before any script (`gitops-engine/pkg/health/health.go` `GetResourceHealth`).
//!
//! The interpreter is Lua 5.1 (the `mlua` crate, vendored): Argo CD's interpreter, gopher-lua,
//! implements Lua 5.1, so a script that needs a later version's syntax or library fails here as it
//! would there. Like Argo CD for an argocd-cm script without `useOpenLibs`, only the base, table and
//! package libraries are loaded (Argo CD adds a reduced `os`, which the script does not use).

use mlua::{Lua, LuaOptions, StdLib, Value as LuaValue};
use serde_json::Value;

/// The health statuses Argo CD accepts from a script (`util/lua/lua.go`
/// `isValidHealthStatusCode`); anything else becomes Unknown.
pub const VALID: [&str; 6] = [
    "Unknown",
    "Progressing",
    "Suspended",
    "Healthy",
    "Degraded",
    "Missing",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub message: String,
}

pub fn script() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argocd/health.lua"),
    )
    .expect("deploy/argocd/health.lua")
}

/// What Argo CD shows for `obj`: `GetResourceHealth` reports an object with a
/// `deletionTimestamp` (and no hook finalizer) as Progressing "Pending deletion" without running
/// the script; otherwise the script decides.
pub fn health(obj: &Value) -> Health {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return Health {
            status: "Progressing".into(),
            message: "Pending deletion".into(),
        };
    }
    run_script(&script(), obj)
}

/// The script alone, as `ExecuteHealthLua` runs it: the object in the global `obj`, the returned
/// table's `status` and `message`, an invalid status turned into Unknown.
pub fn run_script(script: &str, obj: &Value) -> Health {
    let lua =
        Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default()).expect("a Lua state");
    let value = to_lua(&lua, obj);
    lua.globals().set("obj", value).unwrap();
    let returned: LuaValue = lua
        .load(script)
        .set_name("health.lua")
        .call(())
        .unwrap_or_else(|e| panic!("health.lua failed: {e}"));
    let LuaValue::Table(table) = returned else {
        panic!("health.lua returned {returned:?}, Argo CD expects a table");
    };
    let status: Option<String> = table.get("status").unwrap();
    let message: Option<String> = table.get("message").unwrap();
    let status = status.unwrap_or_default();
    if !VALID.contains(&status.as_str()) {
        return Health {
            status: "Unknown".into(),
            message: "Lua returned an invalid health status".into(),
        };
    }
    Health {
        status,
        message: message.unwrap_or_default(),
    }
}

/// `util/lua/lua.go` `decodeValue`: objects become tables keyed by string, arrays sequences from 1,
/// every number a Lua number, null nil.
fn to_lua(lua: &Lua, v: &Value) -> LuaValue {
    match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().unwrap()),
        Value::String(s) => LuaValue::String(lua.create_string(s).unwrap()),
        Value::Array(items) => {
            let t = lua.create_table().unwrap();
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)).unwrap();
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table().unwrap();
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)).unwrap();
            }
            LuaValue::Table(t)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The script's branches on hand-written objects (the fixtures from the e2e suite are in
    //! `fixtures.rs`).
    use super::*;
    use serde_json::json;

    fn obj(generation: i64, observed: i64, conditions: Value) -> Value {
        json!({"apiVersion": "entra.bookme.io/v1alpha1", "kind": "BankClient",
               "metadata": {"name": "x", "generation": generation},
               "status": {"observedGeneration": observed, "conditions": conditions}})
    }

    fn c(type_: &str, status: &str, reason: &str, message: &str) -> Value {
        json!({"type": type_, "status": status, "reason": reason, "message": message})
    }

    fn h(status: &str, message: &str) -> Health {
        Health {
            status: status.into(),
            message: message.into(),
        }
    }

    #[test]
    fn precedence_is_stalled_then_reconciling_then_ready() {
        let s = script();
        let o = obj(
            1,
            1,
            json!([
                c("Ready", "False", "Conflict", "taken"),
                c("Reconciling", "True", "Busy", "b"),
                c("Stalled", "True", "Conflict", "taken")
            ]),
        );
        assert_eq!(run_script(&s, &o), h("Degraded", "Conflict: taken"));
        let o = obj(
            1,
            1,
            json!([
                c("Ready", "True", "Ready", "ok"),
                c("Reconciling", "True", "Rotating", "r"),
                c("Stalled", "False", "Rotating", "")
            ]),
        );
        assert_eq!(run_script(&s, &o), h("Progressing", "Rotating: r"));
    }

    #[test]
    fn ready_false_with_nothing_in_flight_and_nothing_stalled_is_suspended() {
        let o = obj(
            2,
            2,
            json!([
                c("Ready", "False", "NotConsented", "consent at U"),
                c("Reconciling", "False", "NotConsented", ""),
                c("Stalled", "False", "NotConsented", "")
            ]),
        );
        assert_eq!(
            run_script(&script(), &o),
            h("Suspended", "NotConsented: consent at U")
        );
    }

    #[test]
    fn a_ready_false_without_the_kstatus_conditions_is_progressing() {
        // As an operator version before the kstatus conditions writes it.
        let o = obj(1, 1, json!([c("Ready", "False", "GraphForbidden", "403")]));
        assert_eq!(
            run_script(&script(), &o),
            h("Progressing", "GraphForbidden: 403")
        );
    }

    #[test]
    fn no_status_and_unobserved_generation_are_progressing() {
        let s = script();
        let o = json!({"kind": "BankClient", "metadata": {"name": "x", "generation": 1}});
        assert_eq!(
            run_script(&s, &o),
            h("Progressing", "Waiting for the operator to report status")
        );
        let o = obj(4, 3, json!([c("Ready", "True", "Ready", "ok")]));
        assert_eq!(
            run_script(&s, &o),
            h(
                "Progressing",
                "Waiting for the operator to observe generation 4"
            )
        );
    }

    #[test]
    fn deletion_is_pending_deletion_with_or_without_argo_cds_own_rule() {
        let mut o = obj(1, 1, json!([c("Ready", "True", "Ready", "ok")]));
        o["metadata"]["deletionTimestamp"] = json!("2026-12-02T12:00:00Z");
        assert_eq!(health(&o), h("Progressing", "Pending deletion"));
        assert_eq!(
            run_script(&script(), &o),
            h("Progressing", "Pending deletion")
        );
    }

    #[test]
    fn the_script_needs_no_standard_library_and_the_harness_has_none() {
        // Argo CD runs argocd-cm scripts without the string library; so does this harness.
        let broken = r#"return {status = string.format("%s", "Healthy")}"#;
        let lua = Lua::new_with(StdLib::TABLE | StdLib::PACKAGE, LuaOptions::default()).unwrap();
        assert!(lua.load(broken).exec().is_err());
        // An unknown status is Unknown, as Argo CD makes it.
        assert_eq!(
            run_script("return {status = \"Fine\"}", &json!({})),
            h("Unknown", "Lua returned an invalid health status")
        );
    }
}
