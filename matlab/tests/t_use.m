function t_use(ctx, root)
%T_USE Configure the fixture project (or ROOT) for the next loads.
if nargin < 2
    root = ctx.fixture;
end
scistack.configure_database(fullfile(root, 'gait.duckdb'), {'subject', 'session'});
end
