function cases = test_strings(ctx) %#ok<INUSD>
%TEST_STRINGS MATLAB string arguments ("subject", ["pre" "post"]) and Name=Value calls.
%   Octave has no string class: these run with the stand-in matlab/tests/string_double/string.m
%   (isa(x, 'string'), cellstr, char), which is what scistack.internal.plain relies on.
%   Octave's name=value form is plain name/value pairs, so the strings tests cover both.
cases = {
    'plain turns string scalars into char and arrays into cellstr', @plain_values
    'configure_database takes strings and an ignored third argument', @configure
    'save and load with string keys and values', @save_load
    };
end

function plain_values(ctx) %#ok<INUSD>
t_equal(scistack.internal.plain(t_string('pre')), 'pre', 'scalar');
t_equal(scistack.internal.plain(t_string({'pre', 'post'})), {'pre', 'post'}, 'array');
t_equal(scistack.internal.plain({t_string('a'), 1}), {'a', 1}, 'inside a cell');
t_equal(scistack.internal.plain(3), 3, 'other values pass');
end

function root = fresh(ctx)
root = fullfile(ctx.fixture, 'strings');
if exist(root, 'dir')
    rmdir(root, 's');
end
end

function configure(ctx)
root = fresh(ctx);
db = scistack.configure_database(t_string(fullfile(root, 'gait.duckdb')), ...
    t_string({'subject', 'session'}), t_string('pipeline.db'));
t_equal(db.schema_keys, {'subject', 'session'}, 'schema keys');
t_assert(ischar(db.path), 'path is char');
t_assert(exist(fullfile(root, '.scistack', 'config.json'), 'file') == 2, 'created');
end

function save_load(ctx)
root = fresh(ctx);
scistack.configure_database(fullfile(root, 'gait.duckdb'), t_string({'subject', 'session'}));
SavedValue().save([1; 2; 3], t_string('subject'), 1, t_string('session'), t_string('baseline'));
SavedValue().save([4; 5], 'subject', 1, 'session', 'post');
r = SavedValue().load(t_string('subject'), 1, t_string('session'), t_string('baseline'));
t_equal(r.data, [1; 2; 3], 'value back');
t_equal(r.metadata.session, 'baseline', 'session stored as text');
rs = SavedValue().load_all('session', t_string({'baseline', 'post'}));
t_equal(numel(rs), 2, 'a string array matches any element');
end
