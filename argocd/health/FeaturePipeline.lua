-- Generated from argocd/health.lua.in by gen_cm_patch.py: edit the template, not this file.
-- Argo CD health check for recops.dev/FeaturePipeline (installed as
-- resource.customizations.health.recops.dev_FeaturePipeline by argocd-cm-patch.yaml; tested with lupa in
-- tests/unit/chart/test_argocd_health.py against objects captured from the operator).
-- Ready summarises the object: True -> Healthy, False -> Degraded, Unknown -> Progressing.
-- DriftDetected=True (a DriftMonitor's finding) is not a failure: the object stays Healthy and says so.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Recops operator to report status"
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Recops operator to observe generation " .. tostring(generation)
  return hs
end
local summary = nil
local drift = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    summary = condition
  elseif condition.type == "DriftDetected" then
    drift = condition
  end
end
if summary == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
local message = (summary.reason or "") .. ": " .. (summary.message or "")
if summary.status == "True" then
  hs.status = "Healthy"
  -- Drift is what the monitor is for, not a fault of the monitor: it stays Healthy and says so.
  if drift ~= nil and drift.status == "True" then
    message = "Drift detected (" .. (drift.reason or "") .. "): " .. (drift.message or "")
  end
elseif summary.status == "False" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
hs.message = message
return hs
