-- Labels an admin sets on an organisation, a workspace or an agent access, which rules read
-- (`agent.labels.team`): a JSON object of strings.
ALTER TABLE organisations ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE workspaces ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agent_accesses ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
