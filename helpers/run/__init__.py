"""One training run and many: plan, build, fit, evaluate and record one entry (`train`), the run records and code
fingerprint (`records`), claims shared by workers (`claims`), progress lines (`progress`), the projected time
(`projection`) and the backend and worker layout a study trains with (`backend_choice`)."""
