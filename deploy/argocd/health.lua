-- Argo CD health check for the entra.bookme.io kinds: AppRegistration, BankClient, TenantMapping,
-- NaaIntegration. One script serves all four: they report the same kstatus conditions
-- (https://github.com/kubernetes-sigs/cli-utils/blob/master/pkg/kstatus/README.md), written by the
-- operator beside Ready:
--   Stalled=True                                   needs a human (a missing Graph permission, a
--                                                  conflict, a request Graph refuses)  -> Degraded
--   Reconciling=True                               work in flight (creating, rotating, waiting for
--                                                  a reference or for replication)     -> Progressing
--   Ready=True                                                                         -> Healthy
--   Ready=False, Reconciling=False, Stalled=False  waiting for someone outside the cluster (a
--                                                  customer's admin consent)           -> Suspended
--   status.observedGeneration behind metadata.generation: the operator has not acted on the
--   latest spec yet                                                                    -> Progressing
-- It uses only Lua's base library: argocd-cm health scripts run without the standard libraries
-- unless resource.customizations.useOpenLibs is set.
local hs = {}

local function describe(condition)
  local reason = condition.reason or ""
  local message = condition.message or ""
  if message == "" then
    return reason
  end
  if reason == "" then
    return message
  end
  return reason .. ": " .. message
end

-- Argo CD itself reports an object being deleted as Progressing "Pending deletion" before it runs
-- a health script (gitops-engine pkg/health GetResourceHealth); the same here, for other callers.
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local ready = nil
local reconciling = nil
local stalled = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Reconciling" then
    reconciling = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
if ready ~= nil and ready.status == "False"
    and reconciling ~= nil and reconciling.status == "False"
    and stalled ~= nil and stalled.status == "False" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the operator to report status"
end
return hs
