"""Pure decisions, table-tested in milliseconds and shared by the workflows, the activities and
the command line (DESIGN.md's `rules/` room): the batch planner (`rules.planner`), the upgrade's
ledger (`rules.ledger`, its approvals in `rules.approvals`) and the gates over it (`rules.gates`),
failure codes (`rules.failures`), the Azure status and report (`rules.reporting`), the Web UI's
wording (`rules.presentation`), the automatic upgrades watcher's bookkeeping (`rules.watcher`) and
what a new version would reach (`rules.enrolled`), the phases of a rollout across regions
(`rules.phases`) and the zone waves of a region's sets (`rules.waves`). No I/O, no clock; imports
only `models/`."""
