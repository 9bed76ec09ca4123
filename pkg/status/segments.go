package status

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A segment holds up to segmentNodes nodes' results, or fewer when their names and
// reasons add up to segmentBytes: names are at most 253 bytes and the controller cuts
// reasons to 300, so a full segment stays near half of the API server's 1 MiB limit for
// a ConfigMap, and the summary carrying the open one (its other fields are bounded:
// maxGroups groups of maxSample names) stays under it too.
//
// New results go to the open segment. When it fills it is sealed: stored as its own
// ConfigMap and never grown again. A node whose result changes or is dropped (keep
// warm) leaves its sealed segment, which is then written once more, smaller; its new
// result goes to the open segment. So a status write carries the summary and rarely a
// sealed segment, whatever the cluster's size: the writes per node stay flat.
const (
	segmentNodes = 1000
	segmentBytes = 512 << 10
)

// layout records which segment holds each node: 0 is the open one, in the summary.
type layout struct {
	segmentOf map[string]int
	members   []map[string]bool // by segment
	openBytes int
	dirty     map[int]bool // sealed segments changed since they were last rendered
}

func (s *Status) layoutOf() *layout {
	if s.layout == nil {
		s.layout = &layout{segmentOf: map[string]int{}, members: []map[string]bool{{}}, dirty: map[int]bool{}}
		for range s.Segments {
			s.layout.members = append(s.layout.members, map[string]bool{})
		}
	}
	l := s.layout
	if len(l.segmentOf) != len(s.Results) { // results added before any layout: open
		for node, r := range s.Results {
			if _, ok := l.segmentOf[node]; !ok {
				l.place(node, r, 0)
			}
		}
	}
	return l
}

func (l *layout) place(node string, r Result, segment int) {
	for len(l.members) <= segment {
		l.members = append(l.members, map[string]bool{})
	}
	l.segmentOf[node] = segment
	l.members[segment][node] = true
	if segment == 0 {
		l.openBytes += resultBytes(node, r)
	}
}

func (l *layout) remove(node string, r Result) {
	segment, ok := l.segmentOf[node]
	if !ok {
		return
	}
	delete(l.segmentOf, node)
	delete(l.members[segment], node)
	if segment == 0 {
		l.openBytes -= resultBytes(node, r)
	} else {
		l.dirty[segment] = true
	}
}

// resultBytes bounds what a result adds to a segment's JSON (its reason may be shared).
func resultBytes(node string, r Result) int { return len(node) + len(r.Reason) + 8 }

// SetResult records a node's result. A changed result moves the node to the open
// segment, so a sealed segment never grows.
func (s *Status) SetResult(node string, r Result) {
	l := s.layoutOf()
	if old, ok := s.Results[node]; ok {
		if old == r {
			return
		}
		l.remove(node, old)
	}
	s.Results[node] = r
	l.place(node, r, 0)
}

// DropResult forgets a node's result (its images went missing: it is prewarmed again).
func (s *Status) DropResult(node string) {
	if old, ok := s.Results[node]; ok {
		s.layoutOf().remove(node, old)
		delete(s.Results, node)
	}
}

// ConfigMaps renders what to store: the sealed segments changed since the last call
// (a full open segment is sealed first), then the summary. Writing them in this order
// never leaves a node in no stored object: a sealed segment lands before the summary
// drops its nodes.
func (s *Status) ConfigMaps(namespace string, labels map[string]string) ([]*corev1.ConfigMap, error) {
	l := s.layoutOf()
	for len(l.members[0]) >= segmentNodes || l.openBytes >= segmentBytes {
		l.seal(s.Results)
	}
	s.Segments = len(l.members) - 1
	var out []*corev1.ConfigMap
	for _, k := range slices.Sorted(maps.Keys(l.dirty)) {
		out = append(out, s.segment(namespace, labels, k))
		delete(l.dirty, k)
	}
	summary, err := s.summary(namespace, labels, encodeNodes(s.Results, l.members[0]), s.Segments)
	if err != nil {
		return nil, err
	}
	return append(out, summary), nil
}

// seal moves the open segment's first nodes by name, up to a segment's bounds, into a
// new sealed segment. An upgraded status arrives with every node open and is cut here.
func (l *layout) seal(results map[string]Result) {
	k := len(l.members)
	l.members = append(l.members, map[string]bool{})
	l.dirty[k] = true
	bytes := 0
	for _, node := range slices.Sorted(maps.Keys(l.members[0])) {
		n := resultBytes(node, results[node])
		if len(l.members[k]) == segmentNodes || (bytes+n > segmentBytes && len(l.members[k]) > 0) {
			return
		}
		bytes += n
		l.remove(node, results[node])
		l.place(node, results[node], k)
	}
}

func (s *Status) segment(namespace string, labels map[string]string, k int) *corev1.ConfigMap {
	l := statusLabels(s.Spec, labels)
	l[LabelSegment] = strconv.Itoa(k)
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: SegmentName(s.Spec, k), Namespace: namespace, Labels: l},
		Data:       map[string]string{KeyRunID: s.RunID, KeyNodes: encodeNodes(s.Results, s.layout.members[k])},
	}
}

// SegmentName names a spec's sealed segment k (k ≥ 1).
func SegmentName(spec string, k int) string {
	return cutName(spec + "-status-" + strconv.Itoa(k))
}

// IsSegment reports whether a status ConfigMap is a sealed segment, not a summary.
func IsSegment(cm *corev1.ConfigMap) bool { return cm.Labels[LabelSegment] != "" }

// Assemble adds the nodes of a summary's sealed segments to it. A segment of another
// run (left by an earlier one) is ignored; a broken one is skipped and named in the
// error, and the run resumes without its nodes, which are observed afresh.
func (s *Status) Assemble(segments []*corev1.ConfigMap) error {
	var errs []string
	l := s.layoutOf()
	for _, cm := range segments {
		k, err := strconv.Atoi(cm.Labels[LabelSegment])
		if err != nil || k < 1 || k > s.Segments || cm.Data[KeyRunID] != s.RunID {
			continue
		}
		nodes := map[string]Result{}
		if err := decodeNodes(cm.Data[KeyNodes], nodes); err != nil {
			errs = append(errs, cm.Name+": "+err.Error())
		}
		for node, r := range nodes {
			if _, ok := s.Results[node]; !ok { // the summary's open segment is newer
				s.Results[node] = r
				l.place(node, r, k)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("status segments: %s", strings.Join(errs, "; "))
	}
	return nil
}

// encodeNodes renders nodes' results grouped as phase → reason → sorted names: a
// reason shared by a thousand nodes is stored once.
func encodeNodes(results map[string]Result, nodes map[string]bool) string {
	grouped := map[string]map[string][]string{}
	for node := range nodes {
		r, ok := results[node]
		if !ok {
			continue
		}
		if grouped[r.Phase] == nil {
			grouped[r.Phase] = map[string][]string{}
		}
		grouped[r.Phase][r.Reason] = append(grouped[r.Phase][r.Reason], node)
	}
	for _, byReason := range grouped {
		for _, names := range byReason {
			sort.Strings(names)
		}
	}
	raw, _ := json.Marshal(grouped) // maps of strings always encode
	return string(raw)
}

// decodeNodes reads encodeNodes' form into results; a cut-short value keeps the
// phases before the cut.
func decodeNodes(raw string, results map[string]Result) error {
	if raw == "" {
		return nil
	}
	return keyError(KeyNodes, decodeObjectPrefix(raw, func(phase string, dec *json.Decoder) error {
		var byReason map[string][]string
		if err := dec.Decode(&byReason); err != nil {
			return err
		}
		for reason, names := range byReason {
			for _, node := range names {
				results[node] = Result{Phase: phase, Reason: reason}
			}
		}
		return nil
	}))
}

// decodeResultsPrefix reads the single results object of older versions; a cut-short
// one keeps every complete entry before the cut.
func decodeResultsPrefix(raw string, results map[string]Result) error {
	return keyError(KeyResults, decodeObjectPrefix(raw, func(node string, dec *json.Decoder) error {
		var r Result
		if err := dec.Decode(&r); err != nil {
			return err
		}
		results[node] = r
		return nil
	}))
}

// decodeObjectPrefix walks a JSON object's members in order, handing each value to
// each, and stops at the first error: what came before it is kept.
func decodeObjectPrefix(raw string, each func(key string, dec *json.Decoder) error) error {
	dec := json.NewDecoder(strings.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("unexpected %v", tok)
		}
		if err := each(key, dec); err != nil {
			return fmt.Errorf("at %q: %w", key, err)
		}
	}
	_, err := dec.Token()
	return err
}
