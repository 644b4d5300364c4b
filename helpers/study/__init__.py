"""The study from the records: Table 1 and its checks (`table`), the notebooks' figures (`plots`) and their shared
first cells (`notebook`), and the headless pipeline that runs the notebooks (`pipeline`, `make table1`)."""
