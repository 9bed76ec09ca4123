package rollout

import "fmt"

// WindowFullError says the run's own window (maxConcurrentNodes) is what kept
// pending nodes waiting. It is a budget, not a failure: the caller requeues and
// the next report frees a slot.
type WindowFullError struct {
	// Window is the effective maxConcurrentNodes.
	Window int
	// Active is how many of the run's Jobs are active once Decision.Start is applied.
	Active int
}

func (e *WindowFullError) Error() string {
	return fmt.Sprintf("rollout window full: %d of %d nodes active", e.Active, e.Window)
}

// RegistryCapError says a registry's maxConcurrentPulls, shared by every run,
// is what kept pending nodes waiting. Callers tell it apart from
// WindowFullError with errors.As, because only this one depends on other runs.
type RegistryCapError struct {
	Registry string
	Cap      int
	// InUse counts Jobs pulling from Registry across all runs once
	// Decision.Start is applied.
	InUse int
}

func (e *RegistryCapError) Error() string {
	return fmt.Sprintf("registry %s concurrency cap reached: %d of %d Jobs in use", e.Registry, e.InUse, e.Cap)
}

var (
	_ error = &WindowFullError{}
	_ error = &RegistryCapError{}
)
