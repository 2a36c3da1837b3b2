-- audioloop: server-first order for clients (WirePlumber 0.4 script).
--
-- The OSS audioloop driver refuses to open a client device while no server
-- holds the loop. In PipeWire the loop's node `audioloop<N>` exists only while
-- a server holds it, but WirePlumber's policy links a stream whose defined
-- target is missing to the default device instead (policy-node.lua: after one
-- rescan "waiting for target" it falls back to the default sink/source unless
-- the stream has node.dont-reconnect). A player would then play to the
-- speakers, a recorder would record the microphone.
--
-- This script ends every stream whose target names an audioloop node that is
-- not there, before the policy links it, and sends its client the error
-- "no audioloop server on <name>" (paplay/pw-play/parecord/pw-record fail
-- like an open() of the OSS client device without a server). A stream
-- that is linked anywhere but its audioloop target (the target went away
-- while it played, e.g. the daemon was killed) is ended the same way.
--
-- A stream names a loop by target.object or node.target, either as the node
-- name (`audioloop0`, `audioloop0.monitor`) or as the object.serial / id of an
-- audioloop node seen earlier.

local NAME_PATTERN = "^audioloop%d+$"

local function loopName(value)
  if value == nil then return nil end
  local name = value:gsub("%.monitor$", "")
  if name:match(NAME_PATTERN) then return name end
  return nil
end

-- serials and ids of audioloop nodes seen (a target may name one by number)
local seen = {}

nodes_om = ObjectManager {
  Interest { type = "node" },
}
clients_om = ObjectManager { Interest { type = "client" } }
links_om = ObjectManager { Interest { type = "link" } }

local function audioloopNode(name)
  return nodes_om:lookup {
    Constraint { "node.name", "=", name, type = "pw-global" },
  }
end

-- the audioloop name a stream node targets, or nil
local function streamTarget(node)
  local props = node.properties
  local mc = props["media.class"]
  if mc == nil or not mc:match("^Stream/") then return nil end
  for _, key in ipairs({ "target.object", "node.target" }) do
    local v = props[key]
    if v ~= nil then
      local name = loopName(v)
      if name then return name end
      if seen[v] then return seen[v] end
    end
  end
  return nil
end

local function refuse(node, target, why)
  local id = node["bound-id"]
  Log.info(node, string.format("audioloop: ending stream %s (%s): %s",
      tostring(node.properties["node.name"]), tostring(id), why))
  local client_id = node.properties["client.id"]
  if client_id then
    local client = clients_om:lookup {
      Constraint { "bound-id", "=", client_id, type = "gobject" },
    }
    if client then
      client:send_error(id, -2, "no audioloop server on " .. target)
    end
  end
  node:request_destroy()
end

local function checkStream(node)
  local target = streamTarget(node)
  if target == nil then return end
  if audioloopNode(target) == nil then
    refuse(node, target, "no server holds " .. target)
  end
end

local function checkLink(link)
  local p = link.properties
  local out_id, in_id = p["link.output.node"], p["link.input.node"]
  if out_id == nil or in_id == nil then return end
  for _, pair in ipairs({ { out_id, in_id }, { in_id, out_id } }) do
    local stream = nodes_om:lookup {
      Constraint { "bound-id", "=", pair[1], type = "gobject" },
    }
    local peer = nodes_om:lookup {
      Constraint { "bound-id", "=", pair[2], type = "gobject" },
    }
    if stream and peer then
      local target = streamTarget(stream)
      if target and peer.properties["node.name"] ~= target then
        refuse(stream, target, "linked to " ..
            tostring(peer.properties["node.name"]) .. " instead of " .. target)
      end
    end
  end
end

nodes_om:connect("object-added", function(om, node)
  local name = node.properties["node.name"]
  if name and name:match(NAME_PATTERN) then
    seen[tostring(node.properties["object.serial"])] = name
    seen[tostring(node["bound-id"])] = name
    return
  end
  checkStream(node)
end)

nodes_om:connect("object-removed", function(om, node)
  local name = node.properties["node.name"]
  if not (name and name:match(NAME_PATTERN)) then return end
  -- its server is gone: end the streams that named it, before the policy
  -- moves them to the default device
  for n in nodes_om:iterate() do
    if n ~= node and streamTarget(n) == name and audioloopNode(name) == nil then
      refuse(n, name, "its server closed " .. name)
    end
  end
end)

links_om:connect("object-added", function(om, link)
  checkLink(link)
end)

nodes_om:activate()
clients_om:activate()
links_om:activate()
