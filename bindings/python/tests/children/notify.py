import sys
import time

import honker

path, channel, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = honker.open(path)
time.sleep(0.05)
for i in range(n):
    db.notify(channel, i)
db.close()
