// Package jobs builds the objects of one prewarm run: the ephemeral pull Secret
// and the per-node pull Jobs, and derives their names and labels.
//
// Everything here is pure (no API calls) so that the controller, the task API and
// tests derive the same names from the same run, and a restarted controller finds
// the objects it created before.
package jobs
