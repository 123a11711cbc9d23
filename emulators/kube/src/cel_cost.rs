//! Static cost estimation of `x-kubernetes-validations` rules, as kube-apiserver does it when a CRD
//! is created or updated, and the per-rule and per-CRD limits it enforces.
//!
//! The estimate follows cel-go's `checker/cost.go` (the `coster`: costs of identifiers, selects,
//! calls, comprehensions; size tracking through paths, literals, iteration variables) with the
//! Kubernetes library estimator (`k8s.io/apiserver/pkg/cel/library/cost.go`: `split`, `replace`,
//! `lowerAscii`, …) and the schema size estimator of `apiextensions-apiserver`
//! (`schema/cel/compilation.go` `sizeEstimator`, `k8s.io/apiserver/pkg/cel/common/schemas.go`
//! `SchemaDeclType`: `maxLength` × 4 for strings, `maxItems`/`maxProperties`, and without them
//! as many elements as fit into a 3 MiB request). A rule's cost is its worst case (`Max`)
//! multiplied by how many times the schema node can occur (the product of the `maxItems` /
//! `maxProperties` above it, or when one of them is unbounded, 3 MiB / (minimum serialized
//! size plus 1)) — `getExpressionCost` in `apiextensions/validation/validation.go`. Sources are listed
//! in `FIDELITY.md`.
//!
//! Not reproduced: cel-go's full type checker. Types come from the schema and a small set of
//! rules for literals, operators and the functions Kubernetes rules use; a call on a `dyn` value
//! costs as one overload (cel-go unions the costs of every candidate overload).

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use serde_json::Value;

use crate::field_error::FieldError;

/// `StaticEstimatedCostLimit`: the largest estimated cost of one rule (times its cardinality).
pub const STATIC_ESTIMATED_COST_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`: the largest total of all rules of one CRD version's schema.
pub const STATIC_ESTIMATED_CRD_COST_LIMIT: u64 = 100_000_000;
/// `PerCallLimit` (`k8s.io/apiserver/pkg/apis/cel/config.go`): the runtime cost limit of one
/// evaluation of one rule.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// `RuntimeCELCostBudget`: the runtime cost limit of all rules for one object.
pub const RUNTIME_CEL_COST_BUDGET: u64 = 10_000_000;
/// `DefaultMaxRequestSizeBytes` (`k8s.io/apiserver/pkg/cel/limits.go`): 3 MiB.
pub const MAX_REQUEST_SIZE_BYTES: i64 = 3 * 1024 * 1024;

const STRING_TRAVERSAL_COST_FACTOR: f64 = 0.1;
const REGEX_STRING_LENGTH_COST_FACTOR: f64 = 0.25;
const LIST_CREATE_BASE_COST: u64 = 10;
const MAP_CREATE_BASE_COST: u64 = 30;
const STRUCT_CREATE_BASE_COST: u64 = 40;

// ------------------------------------------------------------------ estimates

/// A range of sizes (characters of a string, items of a list, entries of a map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub min: u64,
    pub max: u64,
}

/// A range of costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cost {
    pub min: u64,
    pub max: u64,
}

const UNKNOWN_SIZE: Size = Size {
    min: 0,
    max: u64::MAX,
};

fn fixed_size(n: u64) -> Size {
    Size { min: n, max: n }
}

fn fixed(n: u64) -> Cost {
    Cost { min: n, max: n }
}

fn mul_factor(x: u64, y: f64) -> u64 {
    let xf = x as f64;
    if xf > 0.0 && y > 0.0 && xf > u64::MAX as f64 / y {
        return u64::MAX;
    }
    let c = (xf * y).ceil();
    if c >= 18_446_744_073_709_551_616.0 {
        return u64::MAX;
    }
    c as u64
}

impl Size {
    fn add(self, o: Size) -> Size {
        Size {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }
    fn union(self, o: Size) -> Size {
        Size {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    fn factor(self, f: f64) -> Cost {
        Cost {
            min: mul_factor(self.min, f),
            max: mul_factor(self.max, f),
        }
    }
    fn times_cost(self, c: Cost) -> Cost {
        Cost {
            min: self.min.saturating_mul(c.min),
            max: self.max.saturating_mul(c.max),
        }
    }
}

impl Cost {
    fn add(self, o: Cost) -> Cost {
        Cost {
            min: self.min.saturating_add(o.min),
            max: self.max.saturating_add(o.max),
        }
    }
    fn union(self, o: Cost) -> Cost {
        Cost {
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
    fn mul(self, o: Cost) -> Cost {
        Cost {
            min: self.min.saturating_mul(o.min),
            max: self.max.saturating_mul(o.max),
        }
    }
}

// ------------------------------------------------------------------ schema declarations

/// The CEL declaration of a schema node (`apiserver/pkg/cel` `DeclType`): its shape, the
/// `MaxElements` the size estimator reports for it and its minimum JSON size.
#[derive(Debug)]
pub struct Decl {
    kind: DeclKind,
    max_elements: i64,
    min_size: i64,
}

#[derive(Debug)]
enum DeclKind {
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Dyn,
    List(Rc<Decl>),
    Map(Rc<Decl>),
    Object(BTreeMap<String, Rc<Decl>>),
}

fn simple(kind: DeclKind, min_size: i64) -> Decl {
    Decl {
        kind,
        max_elements: 0,
        min_size,
    }
}

fn max_string_len_per_request(s: &Value) -> i64 {
    if s["x-kubernetes-int-or-string"] == true {
        return MAX_REQUEST_SIZE_BYTES - 2;
    }
    match s["format"].as_str() {
        Some("duration") | Some("date-time") => 32,
        Some("date") => 12,
        _ => MAX_REQUEST_SIZE_BYTES - 2,
    }
}

fn max_len_x4(s: &Value) -> i64 {
    s["maxLength"].as_i64().unwrap_or(0).max(0) * 4
}

/// `SchemaDeclType`: the declaration of a structural schema, or `None` where rules cannot see it.
pub fn decl_of(s: &Value, resource_root: bool) -> Option<Rc<Decl>> {
    if s["x-kubernetes-int-or-string"] == true {
        let mut d = simple(DeclKind::Dyn, 1);
        d.max_elements = if s["maxLength"].is_i64() {
            max_len_x4(s)
        } else {
            max_string_len_per_request(s)
        };
        return Some(Rc::new(d));
    }
    let ty = s["type"].as_str().unwrap_or_default();
    let decl = match ty {
        "array" => {
            let items = &s["items"];
            if !items.is_object() {
                return None;
            }
            let item = decl_of(items, items["x-kubernetes-embedded-resource"] == true)?;
            let max = match s["maxItems"].as_i64() {
                Some(n) => n.max(0),
                None => (MAX_REQUEST_SIZE_BYTES - 2) / (item.min_size + 1),
            };
            Decl {
                kind: DeclKind::List(item),
                max_elements: max,
                min_size: 2,
            }
        }
        "object" => {
            if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                let val = decl_of(ap, ap["x-kubernetes-embedded-resource"] == true)?;
                let max = match s["maxProperties"].as_i64() {
                    Some(n) => n.max(0),
                    None => (MAX_REQUEST_SIZE_BYTES - 2) / (val.min_size + 6),
                };
                return Some(Rc::new(Decl {
                    kind: DeclKind::Map(val),
                    max_elements: max,
                    min_size: 2,
                }));
            }
            let mut props: serde_json::Map<String, Value> =
                s["properties"].as_object().cloned().unwrap_or_default();
            if resource_root || s["x-kubernetes-embedded-resource"] == true {
                // `WithTypeAndObjectMeta`: kind, apiVersion, metadata.name/generateName are
                // always visible at a resource root.
                let string = serde_json::json!({"type": "string"});
                props.insert("kind".into(), string.clone());
                props.insert("apiVersion".into(), string.clone());
                props.insert(
                    "metadata".into(),
                    serde_json::json!({"type": "object", "properties": {"name": string, "generateName": string}}),
                );
            }
            let required: Vec<&str> = s["required"]
                .as_array()
                .map(|r| r.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let mut fields = BTreeMap::new();
            let mut min_size = 2;
            for (name, p) in &props {
                if let Some(d) = decl_of(p, p["x-kubernetes-embedded-resource"] == true) {
                    if required.contains(&name.as_str()) && p.get("default").is_none() {
                        min_size += name.len() as i64 + d.min_size + 4;
                    }
                    fields.insert(name.clone(), d);
                }
            }
            Decl {
                kind: DeclKind::Object(fields),
                max_elements: 0,
                min_size,
            }
        }
        "string" => match s["format"].as_str() {
            Some("byte") => {
                let mut d = simple(DeclKind::Bytes, 2);
                d.max_elements = match s["maxLength"].as_i64() {
                    Some(n) => n.max(0),
                    None => max_string_len_per_request(s),
                };
                d
            }
            Some("duration") => {
                let mut d = simple(DeclKind::Duration, 3);
                d.max_elements = max_string_len_per_request(s);
                d
            }
            Some("date") => {
                let mut d = simple(DeclKind::Timestamp, 12);
                d.max_elements = max_string_len_per_request(s);
                d
            }
            Some("date-time") => {
                let mut d = simple(DeclKind::Timestamp, 21);
                d.max_elements = max_string_len_per_request(s);
                d
            }
            _ => {
                let mut d = simple(DeclKind::String, 2);
                d.max_elements = if s["maxLength"].is_i64() {
                    max_len_x4(s)
                } else if let Some(e) = s["enum"].as_array().filter(|e| !e.is_empty()) {
                    e.iter()
                        .filter_map(|v| v.as_str())
                        .map(|v| v.len() as i64)
                        .max()
                        .unwrap_or(0)
                } else {
                    max_string_len_per_request(s)
                };
                d
            }
        },
        "boolean" => simple(DeclKind::Bool, 4),
        "number" => simple(DeclKind::Double, 1),
        "integer" => simple(DeclKind::Int, 1),
        _ => return None,
    };
    Some(Rc::new(decl))
}

// ------------------------------------------------------------------ types

#[derive(Clone, Debug)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Null,
    Dyn,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// An object of the schema.
    Object(Rc<Decl>),
}

fn ty_of(d: &Rc<Decl>) -> Ty {
    match &d.kind {
        DeclKind::Bool => Ty::Bool,
        DeclKind::Int => Ty::Int,
        DeclKind::Double => Ty::Double,
        DeclKind::String => Ty::String,
        DeclKind::Bytes => Ty::Bytes,
        DeclKind::Duration => Ty::Duration,
        DeclKind::Timestamp => Ty::Timestamp,
        DeclKind::Dyn => Ty::Dyn,
        DeclKind::List(e) => Ty::List(Box::new(ty_of(e))),
        DeclKind::Map(v) => Ty::Map(Box::new(Ty::String), Box::new(ty_of(v))),
        DeclKind::Object(_) => Ty::Object(d.clone()),
    }
}

impl Ty {
    /// `isScalar`: types whose size is always 1.
    fn scalar(&self) -> bool {
        matches!(
            self,
            Ty::Bool | Ty::Double | Ty::Duration | Ty::Int | Ty::Timestamp | Ty::Uint
        )
    }
    fn struct_like(&self) -> bool {
        matches!(self, Ty::Map(..) | Ty::Object(_))
    }
}

// ------------------------------------------------------------------ the coster

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    List,
    Map,
}

#[derive(Clone, Copy, Debug)]
struct EntrySize {
    container: Container,
    key: Size,
    val: Size,
}

impl EntrySize {
    fn union(a: Option<EntrySize>, b: Option<EntrySize>) -> Option<EntrySize> {
        let (a, b) = (a?, b?);
        Some(EntrySize {
            container: a.container,
            key: a.key.union(b.key),
            val: a.val.union(b.val),
        })
    }
}

/// What the coster knows about one expression after costing it.
#[derive(Clone, Debug)]
struct Node {
    ty: Ty,
    path: Option<Vec<String>>,
    /// A size set by a call or comprehension (`computedSizes`).
    set_size: Option<Size>,
    /// The size of a literal (`computeExprSize`).
    expr_size: Option<Size>,
    /// The size of the local variable this identifier names.
    local_size: Option<Size>,
    entry: Option<EntrySize>,
    literal: Option<LiteralValue>,
}

impl Node {
    fn new(ty: Ty) -> Node {
        Node {
            ty,
            path: None,
            set_size: None,
            expr_size: None,
            local_size: None,
            entry: None,
            literal: None,
        }
    }
}

struct Local {
    ty: Ty,
    path: Option<Vec<String>>,
    size: Option<Size>,
    entry: Option<EntrySize>,
}

struct Coster {
    root: Rc<Decl>,
    locals: HashMap<String, Vec<Local>>,
}

impl Coster {
    /// The sizeEstimator of `compilation.go`: walk the root declaration along the path (its first
    /// element, the variable, is skipped) and report `MaxElements`.
    fn estimate_size(&self, path: &Option<Vec<String>>) -> Option<Size> {
        let path = path.as_ref()?;
        if path.is_empty() {
            return None;
        }
        let mut cur = self.root.clone();
        for name in &path[1..] {
            let next = match (name.as_str(), &cur.kind) {
                ("@items" | "@values", DeclKind::List(e) | DeclKind::Map(e)) => e.clone(),
                ("@keys", DeclKind::Map(_)) => Rc::new(simple(DeclKind::String, 2)),
                (_, DeclKind::Object(fields)) => fields.get(name)?.clone(),
                _ => return None,
            };
            cur = next;
        }
        Some(Size {
            min: 0,
            max: cur.max_elements.max(0) as u64,
        })
    }

    /// `computeSize`.
    fn size(&self, n: &Node) -> Option<Size> {
        n.set_size
            .or(n.expr_size)
            .or_else(|| self.estimate_size(&n.path))
            .or_else(|| n.ty.scalar().then(|| fixed_size(1)))
            .or(n.local_size)
    }

    fn size_or_unknown(&self, n: &Node) -> Size {
        self.size(n).unwrap_or(UNKNOWN_SIZE)
    }

    fn push(&mut self, name: &str, local: Local) {
        self.locals.entry(name.to_string()).or_default().push(local);
    }

    fn pop(&mut self, name: &str) {
        if let Some(v) = self.locals.get_mut(name) {
            v.pop();
        }
    }

    fn peek(&self, name: &str) -> Option<&Local> {
        self.locals.get(name).and_then(|v| v.last())
    }

    fn cost(&mut self, e: &IdedExpr) -> (Cost, Node) {
        match &e.expr {
            Expr::Literal(l) => {
                let (ty, size) = match l {
                    LiteralValue::String(s) => (Ty::String, s.inner().chars().count() as u64),
                    LiteralValue::Bytes(b) => (Ty::Bytes, b.inner().len() as u64),
                    LiteralValue::Boolean(_) => (Ty::Bool, 1),
                    LiteralValue::Double(_) => (Ty::Double, 1),
                    LiteralValue::Int(_) => (Ty::Int, 1),
                    LiteralValue::UInt(_) => (Ty::Uint, 1),
                    LiteralValue::Null => (Ty::Null, 1),
                };
                let mut n = Node::new(ty);
                n.expr_size = Some(fixed_size(size));
                n.literal = Some(l.clone());
                (Cost::default(), n)
            }
            Expr::Ident(name) => {
                let n = if let Some(l) = self.peek(name) {
                    let mut n = Node::new(l.ty.clone());
                    n.path = l.path.clone();
                    n.local_size = l.size;
                    n.entry = l.entry;
                    n
                } else if name == "self" || name == "oldSelf" {
                    let mut n = Node::new(ty_of(&self.root));
                    n.path = Some(vec![name.clone()]);
                    n
                } else {
                    let mut n = Node::new(Ty::Dyn);
                    n.path = Some(vec![name.clone()]);
                    n
                };
                (fixed(1), n)
            }
            Expr::Select(sel) => {
                let (oc, on) = self.cost(&sel.operand);
                if sel.test {
                    return (fixed(1).add(oc), Node::new(Ty::Bool));
                }
                let mut c = oc;
                if on.ty.struct_like() {
                    c = c.add(fixed(1));
                }
                let ty = match &on.ty {
                    Ty::Object(d) => match &d.kind {
                        DeclKind::Object(f) => f.get(&sel.field).map(ty_of).unwrap_or(Ty::Dyn),
                        _ => Ty::Dyn,
                    },
                    Ty::Map(_, v) => (**v).clone(),
                    _ => Ty::Dyn,
                };
                let mut n = Node::new(ty);
                let mut p = on.path.clone().unwrap_or_default();
                p.push(sel.field.clone());
                n.path = Some(p);
                (c, n)
            }
            Expr::List(l) => {
                let mut sum = Cost::default();
                let mut item = Size {
                    min: if l.elements.is_empty() { 0 } else { u64::MAX },
                    max: 0,
                };
                let mut elem_ty = Ty::Dyn;
                for (i, el) in l.elements.iter().enumerate() {
                    let (c, n) = self.cost(el);
                    sum = sum.add(c);
                    item = item.union(self.size_or_unknown(&n));
                    if i == 0 {
                        elem_ty = n.ty.clone();
                    }
                }
                let mut n = Node::new(Ty::List(Box::new(elem_ty)));
                n.expr_size = Some(fixed_size(l.elements.len() as u64));
                n.entry = Some(EntrySize {
                    container: Container::List,
                    key: fixed_size(1),
                    val: item,
                });
                (sum.add(fixed(LIST_CREATE_BASE_COST)), n)
            }
            Expr::Map(m) => {
                let empty = m.entries.is_empty();
                let start = Size {
                    min: if empty { 0 } else { u64::MAX },
                    max: 0,
                };
                let (mut ks, mut vs) = (start, start);
                let mut sum = Cost::default();
                let (mut kt, mut vt) = (Ty::Dyn, Ty::Dyn);
                for (i, ent) in m.entries.iter().enumerate() {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &ent.expr {
                        let (kc, kn) = self.cost(&me.key);
                        let (vc, vn) = self.cost(&me.value);
                        sum = sum.add(kc).add(vc);
                        ks = ks.union(self.size_or_unknown(&kn));
                        vs = vs.union(self.size_or_unknown(&vn));
                        if i == 0 {
                            kt = kn.ty;
                            vt = vn.ty;
                        }
                    }
                }
                let mut n = Node::new(Ty::Map(Box::new(kt), Box::new(vt)));
                n.expr_size = Some(fixed_size(m.entries.len() as u64));
                n.entry = Some(EntrySize {
                    container: Container::Map,
                    key: ks,
                    val: vs,
                });
                (sum.add(fixed(MAP_CREATE_BASE_COST)), n)
            }
            Expr::Struct(s) => {
                let mut sum = Cost::default();
                for ent in &s.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &ent.expr {
                        sum = sum.add(self.cost(&f.value).0);
                    }
                }
                (sum.add(fixed(STRUCT_CREATE_BASE_COST)), Node::new(Ty::Dyn))
            }
            Expr::Comprehension(c) => self.cost_comprehension(c),
            Expr::Call(call) => self.cost_call(call),
            Expr::Unspecified => (Cost::default(), Node::new(Ty::Dyn)),
        }
    }

    fn cost_comprehension(&mut self, c: &cel::common::ast::ComprehensionExpr) -> (Cost, Node) {
        let (rc, rn) = self.cost(&c.iter_range);
        let (ic, inode) = self.cost(&c.accu_init);
        let mut sum = rc.add(ic);
        let accu_ty = inode.ty.clone();
        self.push(
            &c.accu_var,
            Local {
                ty: accu_ty.clone(),
                path: inode.path.clone(),
                size: self.size(&inode),
                entry: inode.entry,
            },
        );
        let range_entry = rn.entry;
        let container = match range_entry {
            Some(e) => e.container,
            None => match rn.ty {
                Ty::Map(..) => Container::Map,
                _ => Container::List,
            },
        };
        let (key_ty, val_ty) = match &rn.ty {
            Ty::List(e) => (Ty::Int, (**e).clone()),
            Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
            _ => (Ty::Dyn, Ty::Dyn),
        };
        let base = rn.path.clone().unwrap_or_default();
        let with = |s: &str| {
            let mut p = base.clone();
            p.push(s.to_string());
            Some(p)
        };
        match &c.iter_var2 {
            Some(v2) => {
                self.push(
                    &c.iter_var,
                    Local {
                        ty: key_ty,
                        path: with(if container == Container::List {
                            "@indices"
                        } else {
                            "@keys"
                        }),
                        size: range_entry.map(|e| e.key),
                        entry: None,
                    },
                );
                self.push(
                    v2,
                    Local {
                        ty: val_ty,
                        path: with(if container == Container::List {
                            "@items"
                        } else {
                            "@values"
                        }),
                        size: range_entry.map(|e| e.val),
                        entry: None,
                    },
                );
            }
            None => {
                let (ty, sub, size) = if container == Container::List {
                    (val_ty, "@items", range_entry.map(|e| e.val))
                } else {
                    (key_ty, "@keys", range_entry.map(|e| e.key))
                };
                self.push(
                    &c.iter_var,
                    Local {
                        ty,
                        path: with(sub),
                        size,
                        entry: None,
                    },
                );
            }
        }
        let (loop_cost, _) = self.cost(&c.loop_cond);
        let (step_cost, step_node) = self.cost(&c.loop_step);
        self.pop(&c.iter_var);
        if let Some(v2) = &c.iter_var2 {
            self.pop(v2);
        }
        let (res_cost, res_node) = self.cost(&c.result);
        sum = sum.add(res_cost);
        self.pop(&c.accu_var);
        let range_cnt = self.size_or_unknown(&rn);
        sum = sum.add(range_cnt.times_cost(step_cost.add(loop_cost)));
        let mut n = Node::new(match accu_ty {
            Ty::List(_) | Ty::Map(..) => step_node.ty.clone(),
            _ => res_node.ty.clone(),
        });
        match &c.accu_init.expr {
            Expr::Literal(_) => n.set_size = self.size(&inode),
            Expr::List(_) | Expr::Map(_) => {
                n.set_size = Some(range_cnt);
                n.entry = step_node.entry;
            }
            _ => {}
        }
        (sum, n)
    }

    fn cost_call(&mut self, call: &cel::common::ast::CallExpr) -> (Cost, Node) {
        let f = call.func_name.as_str();
        if f == "dyn" && call.target.is_none() && call.args.len() == 1 {
            let (c, mut n) = self.cost(&call.args[0]);
            n.ty = Ty::Dyn;
            return (fixed(1).add(c), n);
        }
        let mut args = Vec::with_capacity(call.args.len());
        let mut arg_costs = Vec::with_capacity(call.args.len());
        for a in &call.args {
            let (c, n) = self.cost(a);
            arg_costs.push(c);
            args.push(n);
        }
        let mut sum = Cost::default();
        let target = match &call.target {
            Some(t) => {
                let (c, n) = self.cost(t);
                sum = sum.add(c);
                Some(n)
            }
            None => None,
        };
        let arg_sum = arg_costs.iter().fold(Cost::default(), |a, c| a.add(*c));
        let ty = self.result_type(f, target.as_ref(), &args);
        let mut node = Node::new(ty);
        let (fn_cost, result_size) =
            self.function_cost(f, target.as_ref(), &args, &arg_costs, arg_sum, &mut node);
        let mut result_size = result_size;
        if f == operators::INDEX && !args.is_empty() {
            let container = &args[0];
            result_size = container.entry.map(|e| e.val);
            let sub = match container.ty {
                Ty::Map(..) => "@values",
                _ => "@items",
            };
            let mut p = container.path.clone().unwrap_or_default();
            p.push(sub.to_string());
            node.path = Some(p);
        }
        if result_size.is_none() {
            result_size = self.size(&node);
        }
        node.set_size = result_size;
        (sum.add(fn_cost), node)
    }

    fn result_type(&self, f: &str, target: Option<&Node>, args: &[Node]) -> Ty {
        let a0 = args.first().map(|n| n.ty.clone()).unwrap_or(Ty::Dyn);
        match f {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS
            | operators::IN
            | operators::NOT_STRICTLY_FALSE
            | "startsWith"
            | "endsWith"
            | "contains"
            | "matches"
            | "isURL"
            | "isSorted"
            | "isIP"
            | "isCIDR"
            | "isQuantity" => Ty::Bool,
            operators::CONDITIONAL => match args.get(1).map(|n| &n.ty) {
                Some(Ty::Dyn) | None => args.get(2).map(|n| n.ty.clone()).unwrap_or(Ty::Dyn),
                Some(t) => t.clone(),
            },
            operators::ADD => match (&a0, args.get(1).map(|n| &n.ty)) {
                (Ty::Duration, Some(Ty::Timestamp)) => Ty::Timestamp,
                (Ty::Dyn, Some(t)) => t.clone(),
                _ => a0,
            },
            operators::SUBSTRACT => match (&a0, args.get(1).map(|n| &n.ty)) {
                (Ty::Timestamp, Some(Ty::Timestamp)) => Ty::Duration,
                _ => a0,
            },
            operators::MULTIPLY | operators::DIVIDE | operators::MODULO | operators::NEGATE => a0,
            operators::INDEX => match &a0 {
                Ty::List(e) => (**e).clone(),
                Ty::Map(_, v) => (**v).clone(),
                _ => Ty::Dyn,
            },
            "size" | "int" | "indexOf" | "lastIndexOf" | "getSeconds" | "getMinutes"
            | "getHours" | "getMilliseconds" | "getFullYear" | "getMonth" | "getDate"
            | "getDayOfMonth" | "getDayOfWeek" | "getDayOfYear" => Ty::Int,
            "uint" => Ty::Uint,
            "double" => Ty::Double,
            "string" | "lowerAscii" | "upperAscii" | "trim" | "substring" | "replace" | "join"
            | "format" | "charAt" | "quote" => Ty::String,
            "bytes" => Ty::Bytes,
            "duration" => Ty::Duration,
            "timestamp" => Ty::Timestamp,
            "split" | "findAll" => Ty::List(Box::new(Ty::String)),
            "find" => Ty::String,
            "min" | "max" | "sum" => match target.map(|t| &t.ty) {
                Some(Ty::List(e)) => (**e).clone(),
                _ => Ty::Dyn,
            },
            _ => Ty::Dyn,
        }
    }

    /// `functionCost`: the Kubernetes library estimator first, then cel-go's built-in cases, then
    /// a fixed cost of 1. Returns the call's cost (arguments included, target excluded) and its
    /// result size when known.
    fn function_cost(
        &self,
        f: &str,
        target: Option<&Node>,
        args: &[Node],
        arg_costs: &[Cost],
        arg_sum: Cost,
        node: &mut Node,
    ) -> (Cost, Option<Size>) {
        // k8s.io/apiserver/pkg/cel/library/cost.go EstimateCallCost
        if let Some(t) = target {
            let sz = self.size_or_unknown(t);
            match f {
                "lowerAscii" | "upperAscii" | "substring" | "trim" => {
                    return (
                        sz.factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum),
                        Some(sz),
                    );
                }
                "split" => {
                    let mut max = sz.max;
                    if let Some(LiteralValue::Int(n)) = args.get(1).and_then(|a| a.literal.as_ref())
                    {
                        max = (*n.inner()).max(0) as u64;
                    }
                    return (
                        sz.factor(2.0 * STRING_TRAVERSAL_COST_FACTOR).add(arg_sum),
                        Some(Size { min: 0, max }),
                    );
                }
                "replace" if args.len() >= 2 => {
                    // The result size estimate of `replace` is not needed by any rule we know;
                    // the cost is the library's.
                    return (
                        sz.factor(2.0 * STRING_TRAVERSAL_COST_FACTOR).add(arg_sum),
                        None,
                    );
                }
                "find" | "findAll" if !args.is_empty() => {
                    let str_cost = sz.add(fixed_size(1)).factor(STRING_TRAVERSAL_COST_FACTOR);
                    let re = self
                        .size_or_unknown(&args[0])
                        .factor(REGEX_STRING_LENGTH_COST_FACTOR);
                    return (
                        str_cost.mul(re).add(arg_sum),
                        Some(Size {
                            min: 0,
                            max: sz.max,
                        }),
                    );
                }
                "indexOf" | "lastIndexOf" | "isSorted" | "sum" | "max" | "min"
                    if matches!(t.ty, Ty::String) =>
                {
                    return (sz.factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), None);
                }
                _ => {}
            }
        }
        if f == "url" && args.len() == 1 {
            let sz = self.size_or_unknown(&args[0]);
            return (sz.factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), None);
        }
        // cel-go checker/cost.go functionCost
        let a = |i: usize| self.size_or_unknown(&args[i]);
        match f {
            "startsWith" | "endsWith" if target.is_some() && args.len() == 1 => {
                return (a(0).factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), None);
            }
            operators::IN if args.len() == 2 && matches!(args[1].ty, Ty::List(_)) => {
                return (a(1).factor(1.0).add(arg_sum), None);
            }
            "matches" => {
                let (s, re) = match (target, args.len()) {
                    (Some(t), 1) => (self.size_or_unknown(t), a(0)),
                    (None, 2) => (a(0), a(1)),
                    _ => return (fixed(1).add(arg_sum), None),
                };
                let str_cost = s.add(fixed_size(1)).factor(STRING_TRAVERSAL_COST_FACTOR);
                let re_cost = re.factor(REGEX_STRING_LENGTH_COST_FACTOR);
                return (str_cost.mul(re_cost).add(arg_sum), None);
            }
            "contains"
                if args.len() == 1
                    && target.is_some_and(|t| matches!(t.ty, Ty::String | Ty::Dyn)) =>
            {
                let t = target.unwrap();
                let str_cost = self.size_or_unknown(t).factor(STRING_TRAVERSAL_COST_FACTOR);
                let sub = a(0).factor(STRING_TRAVERSAL_COST_FACTOR);
                return (str_cost.mul(sub).add(arg_sum), None);
            }
            operators::LOGICAL_AND | operators::LOGICAL_OR => {
                let (l, r) = (arg_costs[0], arg_costs[1]);
                return (
                    Cost {
                        min: l.min,
                        max: l.add(r).max,
                    },
                    None,
                );
            }
            operators::CONDITIONAL => {
                let size = a(1).union(a(2));
                node.entry = EntrySize::union(args[1].entry, args[2].entry);
                let c = arg_costs[0].add(arg_costs[1].union(arg_costs[2]));
                return (c, Some(size));
            }
            operators::ADD
                if args.len() == 2
                    && matches!(
                        (&args[0].ty, &args[1].ty),
                        (Ty::String, _) | (Ty::Bytes, _) | (Ty::List(_), _)
                    ) =>
            {
                let size = a(0).add(a(1));
                if let Some(e) = EntrySize::union(args[0].entry, args[1].entry) {
                    node.entry = Some(e);
                }
                return if matches!(args[0].ty, Ty::List(_)) {
                    (fixed(1).add(arg_sum), Some(size))
                } else {
                    (
                        size.factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum),
                        Some(size),
                    )
                };
            }
            operators::EQUALS | operators::NOT_EQUALS => {
                return (self.compare_cost(args, arg_sum), None);
            }
            operators::LESS
            | operators::GREATER
            | operators::LESS_EQUALS
            | operators::GREATER_EQUALS
                if matches!(args[0].ty, Ty::String | Ty::Bytes) =>
            {
                return (self.compare_cost(args, arg_sum), None);
            }
            _ => {}
        }
        (fixed(1).add(arg_sum), None)
    }

    fn compare_cost(&self, args: &[Node], arg_sum: Cost) -> Cost {
        let l = self.size_or_unknown(&args[0]);
        let r = self.size_or_unknown(&args[1]);
        let smallest_max = l.max.min(r.max);
        let min = if smallest_max > 0 { 1 } else { 0 };
        Size {
            min,
            max: smallest_max,
        }
        .factor(STRING_TRAVERSAL_COST_FACTOR)
        .add(arg_sum)
    }
}

/// The estimated worst-case cost of one rule whose `self` is described by `decl`.
pub fn estimate_rule(rule: &str, decl: &Rc<Decl>) -> Result<Cost, String> {
    let expr = cel::parser::Parser::new()
        .parse(rule)
        .map_err(|e| e.to_string())?;
    let mut c = Coster {
        root: decl.clone(),
        locals: HashMap::new(),
    };
    Ok(c.cost(&expr).0)
}

// ------------------------------------------------------------------ CRD-level checks

/// One rule of a CRD with its estimated cost, as the API server computes it.
#[derive(Debug, Clone)]
pub struct RuleCost {
    /// The field path the API server reports, e.g.
    /// `spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`.
    pub path: String,
    pub rule: String,
    /// The rule's estimated cost for one evaluation (`CompilationResult.MaxCost`).
    pub max_cost: u64,
    /// How many times the rule can be evaluated for one object.
    pub cardinality: u64,
    /// `max_cost × cardinality`, compared with [`STATIC_ESTIMATED_COST_LIMIT`].
    pub cost: u64,
}

/// Every rule of one schema (a CRD version's `openAPIV3Schema`), with its cost. `base` is the path
/// of the schema, e.g. `spec.validation.openAPIV3Schema`.
pub fn rule_costs(schema: &Value, base: &str) -> Vec<RuleCost> {
    let mut out = Vec::new();
    walk(schema, base, Some(1), true, &mut out);
    out
}

fn walk(s: &Value, path: &str, cardinality: Option<u64>, root: bool, out: &mut Vec<RuleCost>) {
    if !s.is_object() {
        return;
    }
    if let Some(rules) = s["x-kubernetes-validations"].as_array()
        && let Some(decl) = decl_of(s, root || s["x-kubernetes-embedded-resource"] == true)
    {
        for (i, r) in rules.iter().enumerate() {
            let rule = r["rule"].as_str().unwrap_or_default();
            if rule.trim().is_empty() {
                continue;
            }
            let Ok(est) = estimate_rule(rule, &decl) else {
                continue;
            };
            let card = cardinality
                .unwrap_or_else(|| (MAX_REQUEST_SIZE_BYTES / (decl.min_size + 1)) as u64);
            let cost = if est.max == 0 {
                0
            } else {
                est.max.saturating_mul(card)
            };
            out.push(RuleCost {
                path: format!("{path}.x-kubernetes-validations[{i}].rule"),
                rule: rule.to_string(),
                max_cost: est.max,
                cardinality: card,
                cost,
            });
        }
    }
    // extractMaxElements: the factor by which this node multiplies its children's cardinality.
    let factor = match s["type"].as_str() {
        Some("array") => s["maxItems"].as_i64().map(|n| n.max(0) as u64),
        Some("object") if s.get("additionalProperties").is_some_and(|a| a.is_object()) => {
            s["maxProperties"].as_i64().map(|n| n.max(0) as u64)
        }
        _ => Some(1),
    };
    let child = match (cardinality, factor) {
        (Some(c), Some(f)) => Some(c.saturating_mul(f)),
        _ => None,
    };
    if let Some(props) = s["properties"].as_object() {
        for (name, p) in props {
            walk(p, &format!("{path}.properties[{name}]"), child, false, out);
        }
    }
    if s["items"].is_object() {
        walk(&s["items"], &format!("{path}.items"), child, false, out);
    }
    if s["additionalProperties"].is_object() {
        walk(
            &s["additionalProperties"],
            &format!("{path}.additionalProperties"),
            child,
            false,
            out,
        );
    }
}

/// `getCostErrorMessage`.
pub fn cost_error_message(name: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let f = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{name} exceeds budget by factor of {f} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// The cost errors kube-apiserver reports for a CRD (empty when it is within budget).
pub fn crd_cost_errors(crd: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(versions) = crd["spec"]["versions"].as_array() else {
        return errors;
    };
    // The internal CRD form lifts a schema shared by every version to `spec.validation`, which is
    // the path the API server reports; different schemas stay per version.
    let schemas: Vec<&Value> = versions
        .iter()
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .collect();
    let shared = schemas.windows(2).all(|w| w[0] == w[1]);
    let bases: Vec<(String, &Value)> = if shared {
        schemas
            .first()
            .map(|s| vec![("spec.validation.openAPIV3Schema".to_string(), *s)])
            .unwrap_or_default()
    } else {
        schemas
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.versions[{i}].schema.openAPIV3Schema"), *s))
            .collect()
    };
    for (base, schema) in bases {
        let costs = rule_costs(schema, &base);
        let mut total: u64 = 0;
        let mut expensive: Vec<&RuleCost> = Vec::new();
        for rc in &costs {
            if rc.cost > STATIC_ESTIMATED_COST_LIMIT {
                errors.push(forbidden(
                    &rc.path,
                    cost_error_message("estimated rule cost", rc.cost, STATIC_ESTIMATED_COST_LIMIT),
                ));
            }
            total = total.saturating_add(rc.cost);
            if rc.cost >= STATIC_ESTIMATED_CRD_COST_LIMIT / 100 {
                expensive.push(rc);
                expensive.sort_by_key(|b| std::cmp::Reverse(b.cost));
                expensive.truncate(4);
            }
        }
        if total > STATIC_ESTIMATED_CRD_COST_LIMIT {
            for rc in expensive {
                errors.push(forbidden(
                    &rc.path,
                    "contributed to estimated rule & messageExpression cost total exceeding cost limit for entire OpenAPIv3 schema".into(),
                ));
            }
            errors.push(forbidden(
                &base,
                cost_error_message(
                    "x-kubernetes-validations estimated rule & messageExpression cost total for entire OpenAPIv3 schema",
                    total,
                    STATIC_ESTIMATED_CRD_COST_LIMIT,
                ),
            ));
        }
    }
    errors
}

fn forbidden(field: &str, detail: String) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: format!("Forbidden: {detail}"),
        reason: "FieldValueForbidden".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list_of_strings(max_items: Option<i64>, max_len: Option<i64>) -> Value {
        let mut items = json!({"type": "string"});
        if let Some(l) = max_len {
            items["maxLength"] = json!(l);
        }
        let mut s = json!({"type": "array", "items": items});
        if let Some(n) = max_items {
            s["maxItems"] = json!(n);
        }
        s
    }

    /// Published measurements against kube-apiserver: for `self.all(x, x.contains('gpu'))` over a
    /// list of strings, the largest accepted `maxItems` is 909,090 at `maxLength: 16` and 333,333
    /// at `maxLength: 63` (11 and 30 units per item: `4 + ceil(0.4 × maxLength)`).
    #[test]
    fn all_contains_matches_the_api_servers_per_item_cost() {
        for (len, items) in [(16, 909_090), (63, 333_333), (253, 94_339), (1024, 24_154)] {
            let ok = list_of_strings(Some(items), Some(len));
            let over = list_of_strings(Some(items + 1), Some(len));
            let rule = "self.all(x, x.contains('gpu'))";
            let c = estimate_rule(rule, &decl_of(&ok, false).unwrap()).unwrap();
            assert!(c.max <= STATIC_ESTIMATED_COST_LIMIT, "{len}/{items}: {c:?}");
            let c = estimate_rule(rule, &decl_of(&over, false).unwrap()).unwrap();
            assert!(
                c.max > STATIC_ESTIMATED_COST_LIMIT,
                "{len}/{}: {c:?}",
                items + 1
            );
        }
    }

    #[test]
    fn unbounded_strings_are_as_long_as_a_request() {
        let s = list_of_strings(Some(50), None);
        let c = estimate_rule(
            "self.all(u, self.exists_one(v, v == u))",
            &decl_of(&s, false).unwrap(),
        )
        .unwrap();
        assert!(c.max > 10 * STATIC_ESTIMATED_COST_LIMIT, "{c:?}");
        let bounded = list_of_strings(Some(50), Some(100));
        let c = estimate_rule(
            "self.all(u, self.exists_one(v, v == u))",
            &decl_of(&bounded, false).unwrap(),
        )
        .unwrap();
        assert!(c.max < PER_CALL_LIMIT, "{c:?}");
    }

    #[test]
    fn concatenating_a_converted_number_is_unbounded() {
        let s = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        let c =
            estimate_rule("string(self.n) + 'h' == '1h'", &decl_of(&s, false).unwrap()).unwrap();
        assert!(c.max > STATIC_ESTIMATED_COST_LIMIT, "{c:?}");
    }

    #[test]
    fn the_message_formats_the_factor_as_the_api_server_does() {
        assert!(
            cost_error_message("estimated rule cost", 20_000_000, 10_000_000)
                .contains("factor of 2.0x")
        );
        assert!(
            cost_error_message("estimated rule cost", 12_000_000, 10_000_000)
                .contains("factor of 1.200000x")
        );
        assert!(
            cost_error_message("estimated rule cost", u64::MAX, 10_000_000)
                .contains("more than 100x")
        );
    }
}
