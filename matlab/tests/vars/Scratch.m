classdef Scratch < scistack.BaseVariable
end
