// Package logging builds the one logger every part uses: logr over zap (JSON in
// production, console for people), with klog routed to the same sink so client-go's
// messages look like ours.
package logging

import (
	"context"
	"fmt"
	"io"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
)

// Keys used in every log line, so a query for one spec or node finds all of its lines.
const (
	KeySpec = "spec"
	KeyRun  = "run"
	KeyNode = "node"
	KeyJob  = "job"
	KeyTask = "task"
)

// Formats.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// New returns a logger writing to w in the given format; verbosity v enables V(1..v).
// It also routes klog to the same sink.
func New(format string, verbosity int, w io.Writer) (logr.Logger, error) {
	var enc zapcore.Encoder
	switch format {
	case FormatJSON:
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	case FormatConsole:
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return logr.Discard(), fmt.Errorf("log format %q: want %s or %s", format, FormatJSON, FormatConsole)
	}
	if verbosity < 0 || verbosity > 10 {
		return logr.Discard(), fmt.Errorf("log verbosity %d: want 0..10", verbosity)
	}
	level := zap.NewAtomicLevelAt(zapcore.Level(-verbosity))
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	logger := zapr.NewLogger(zap.New(core))
	klog.SetLogger(logger.WithName("klog"))
	return logger, nil
}

// FromContext returns the logger riding in ctx (logr's own discard logger if none).
func FromContext(ctx context.Context) logr.Logger {
	return logr.FromContextOrDiscard(ctx)
}

// IntoContext stores logger in ctx.
func IntoContext(ctx context.Context, logger logr.Logger) context.Context {
	return logr.NewContext(ctx, logger)
}
