package status

import (
	"fmt"
	"sort"
	"strings"
)

// A summary keeps at most maxGroups failure groups, each with at most maxSample nodes
// named: 20 000 nodes failing alike are one line, not 20 000. Every node's own result
// is in the segments.
const (
	maxGroups       = 20
	maxSample       = 10
	maxGroupReason  = 1024
	otherReasonsFmt = "(%d other reasons)"
)

// Group is the failed or gone nodes that share one reason.
type Group struct {
	Phase  string   `json:"phase"`
	Reason string   `json:"reason"`
	Count  int      `json:"count"`
	Nodes  []string `json:"nodes"` // the first maxSample by name
}

// GroupFailures groups the results that carry a reason, largest group first; past
// maxGroups the smallest are folded into one group that counts them.
func GroupFailures(results map[string]Result) []Group {
	byKey := map[Result][]string{}
	for node, r := range results {
		if r.Reason != "" {
			byKey[r] = append(byKey[r], node)
		}
	}
	groups := make([]Group, 0, len(byKey))
	for r, nodes := range byKey {
		groups = append(groups, Group{Phase: r.Phase, Reason: cut(r.Reason, maxGroupReason), Count: len(nodes), Nodes: sample(nodes)})
	}
	sort.Slice(groups, func(i, j int) bool {
		if groups[i].Count != groups[j].Count {
			return groups[i].Count > groups[j].Count
		}
		return groups[i].Phase+groups[i].Reason < groups[j].Phase+groups[j].Reason
	})
	if len(groups) <= maxGroups {
		return groups
	}
	rest := Group{Reason: fmt.Sprintf(otherReasonsFmt, len(groups)-maxGroups+1)}
	for _, g := range groups[maxGroups-1:] {
		rest.Count += g.Count
		if len(rest.Nodes) < maxSample {
			rest.Nodes = append(rest.Nodes, g.Nodes[0])
		}
	}
	return append(groups[:maxGroups-1], rest)
}

// sample sorts nodes and keeps the first maxSample.
func sample(nodes []string) []string {
	sort.Strings(nodes)
	return nodes[:min(len(nodes), maxSample)]
}

// FailedCount is how many nodes the groups hold.
func FailedCount(groups []Group) int {
	n := 0
	for _, g := range groups {
		n += g.Count
	}
	return n
}

// describeGroups renders the groups for people, one line per group and its sample.
func describeGroups(groups []Group) string {
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteByte('\n')
		}
		phase := g.Phase
		if phase == "" {
			phase = "Failed or Gone"
		}
		fmt.Fprintf(&b, "%d × %s: %s\n    %s", g.Count, phase, g.Reason, strings.Join(g.Nodes, ", "))
		if more := g.Count - len(g.Nodes); more > 0 {
			fmt.Fprintf(&b, " and %d more", more)
		}
	}
	return b.String()
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
