-- audioloop: load the server-first client rule (audioloop-clients.lua)
-- installed by audioloop's scripts/wireplumber-policy.sh; remove this file
-- and scripts/audioloop-clients.lua (or run that script's `uninstall`) to undo.
load_script("audioloop-clients.lua")
