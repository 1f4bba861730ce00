"""Pure decisions, table-tested in milliseconds and shared by the workflows and the command line
(DESIGN.md's `rules/` room): the phases of a rollout across regions (`rules.phases`) and the
zone waves of a region's sets (`rules.waves`). No I/O; imports only `models/`."""
