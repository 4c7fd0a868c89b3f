"""The Python `tarantool` connector (PyPI) against tests/iproto/server.lua, on node or on
tarantool; prints one line per step. tests/iproto_clients.rs compares the two outputs."""
import sys

import tarantool

port = int(sys.argv[1])


def step(name, f):
    try:
        r = f()
        if hasattr(r, 'data'):
            r = r.data
        print(name, repr(r))
    except tarantool.error.DatabaseError as e:
        print(name, 'DatabaseError', e.args[0], e.args[1])


c = tarantool.connect('127.0.0.1', port, user='test', password='pass')
step('ping', lambda: c.ping() is not None)
step('call', lambda: c.call('add', 1, 2))
step('call multi', lambda: c.call('multi'))
step('call tuple', lambda: c.call('get_tuple'))
step('eval', lambda: c.eval('return 1, 2'))
step('eval args', lambda: c.eval('return ...', [1, 'x']))
step('eval error', lambda: c.eval('error("bad")'))
step('insert', lambda: c.insert('tester', (10, 'ten')))
step('insert dup', lambda: c.insert('tester', (10, 'ten')))
step('replace', lambda: c.replace('tester', (11, 'eleven')))
step('select', lambda: c.select('tester'))
step('select key', lambda: c.select('tester', 10))
step('select index', lambda: c.select('tester', 'eleven', index='name'))
step('update', lambda: c.update('tester', 10, [('=', 1, 'TEN')]))
step('upsert', lambda: c.upsert('tester', (12, 'twelve'), [('=', 1, 'x')]))
step('delete', lambda: c.delete('tester', 11))
step('space select', lambda: c.space('tester').select())
step('no space', lambda: c.select('nosuch'))
step('no proc', lambda: c.call('nosuch'))
c.close()
g = tarantool.connect('127.0.0.1', port)
step('guest call', lambda: g.call('add', 5, 6))
step('guest eval', lambda: g.eval('return 1'))
g.close()
try:
    tarantool.connect('127.0.0.1', port, user='test', password='wrong')
    print('wrong password accepted')
except tarantool.error.Error as e:
    print('wrong password', type(e).__name__, e)
