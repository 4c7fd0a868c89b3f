-- The demo topology: four instances on this host. Credentials are in this file
-- (credentials = 'file'); see cluster-swim.lua for the variant without them.
return {
    credentials = 'file',
    work_dir = '/tmp/twophase/cluster/{n}',
    instances = {
        {number = 1, uuid = 'aaaaaaaa-0000-4000-a000-000000000001', iproto = '127.0.0.1:3301',
         http = 8080, swim = 3311, user = 'twophase', password = 'secret-1'},
        {number = 2, uuid = 'aaaaaaaa-0000-4000-a000-000000000002', iproto = '127.0.0.1:3302',
         http = 8081, swim = 3312, user = 'twophase', password = 'secret-2'},
        {number = 3, uuid = 'aaaaaaaa-0000-4000-a000-000000000003', iproto = '127.0.0.1:3303',
         http = 8082, swim = 3313, user = 'twophase', password = 'secret-3'},
        {number = 4, uuid = 'aaaaaaaa-0000-4000-a000-000000000004', iproto = '127.0.0.1:3304',
         http = 8083, swim = 3314, user = 'twophase', password = 'secret-4'},
    },
}
