function root = t_copy_project(ctx)
%T_COPY_PROJECT A private copy of the fixture project (for tests that write to it).
root = tempname();
mkdir(root);
copyfile(fullfile(ctx.fixture, '.scistack'), fullfile(root, '.scistack'));
end
