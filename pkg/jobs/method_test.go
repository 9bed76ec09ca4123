package jobs

import "testing"

func TestImageVolumeJobRunsOnlyTheNoop(t *testing.T) {
	job := BuildJob(params(withPullSecret, func(p *JobParams) { p.Method = MethodImageVolume }))
	spec := job.Spec.Template.Spec
	if len(spec.InitContainers) != 0 || len(spec.Containers) != 1 {
		t.Fatalf("want only the done container, got %d init and %d containers", len(spec.InitContainers), len(spec.Containers))
	}
	p := params()
	if len(spec.Volumes) != len(p.Images) {
		t.Fatalf("volumes %d, want one per image (%d)", len(spec.Volumes), len(p.Images))
	}
	done := spec.Containers[0]
	if done.Image != p.NoopImage || done.Command[0] != NoopBinary {
		t.Fatalf("done container runs %s %v", done.Image, done.Command)
	}
	for i, img := range p.Images {
		v := spec.Volumes[i]
		if v.Name != ImageVolumeName(i) || v.Image == nil || v.Image.Reference != img.Image || v.Image.PullPolicy != img.PullPolicy {
			t.Errorf("volume %d = %+v, want image volume of %s", i, v, img.Image)
		}
		if m := done.VolumeMounts[i]; m.Name != v.Name || !m.ReadOnly {
			t.Errorf("mount %d = %+v", i, m)
		}
	}
	if len(spec.ImagePullSecrets) != 1 || spec.ImagePullSecrets[0].Name != SecretName(p.Ref.RunID) || !*spec.SecurityContext.RunAsNonRoot {
		t.Error("pull secret and security context must stay as for init containers")
	}
}

func TestInitContainersIsTheDefault(t *testing.T) {
	spec := BuildJob(params()).Spec.Template.Spec
	if len(spec.InitContainers) != 1+len(params().Images) || spec.Volumes[0].EmptyDir == nil {
		t.Fatalf("default method: want install + one init container per image and the noop emptyDir")
	}
	for _, v := range spec.Volumes {
		if v.Image != nil {
			t.Fatal("init-container Jobs have no image volumes")
		}
	}
}
